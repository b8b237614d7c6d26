// The engine's wire format (engine/steermoe_engine/protocol.py is the other half): a u32 LE
// length, a JSON header, then the raw bytes of each array the header refers to as
// {"$array": i, "dtype", "shape"}. Arrays travel as bytes so routing never goes through JSON.

export const DTYPES = {
  uint8: Uint8Array,
  uint16: Uint16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  float16: Uint16Array, // raw half-precision bits; Node 20 has no Float16Array
  float32: Float32Array,
  float64: Float64Array,
} as const;
export type DType = keyof typeof DTYPES;
export type TypedArray = InstanceType<(typeof DTYPES)[DType]>;

export interface NDArray {
  dtype: DType;
  shape: number[];
  data: TypedArray;
}

export function isNDArray(value: unknown): value is NDArray {
  return typeof value === "object" && value !== null && "data" in value && ArrayBuffer.isView(value.data);
}

function dtypeOf(data: TypedArray): DType {
  for (const [name, ctor] of Object.entries(DTYPES)) if (data instanceof ctor) return name as DType;
  throw new TypeError("unsupported typed array");
}

export function ndarray(data: TypedArray, shape: number[], dtype: DType = dtypeOf(data)): NDArray {
  const size = shape.reduce((a, b) => a * b, 1);
  if (size !== data.length) throw new RangeError(`shape [${shape}] needs ${size} values, got ${data.length}`);
  return { dtype, shape, data };
}

export function encodeFrame(message: object): Buffer[] {
  const buffers: Buffer[] = [];
  const json = JSON.stringify(message, (_key, value: unknown) => {
    if (!isNDArray(value)) return value;
    buffers.push(Buffer.from(value.data.buffer, value.data.byteOffset, value.data.byteLength));
    return { $array: buffers.length - 1, dtype: value.dtype, shape: value.shape };
  });
  const withSizes = JSON.stringify({ ...JSON.parse(json), buffers: buffers.map((b) => b.length) });
  const header = Buffer.from(withSizes);
  const size = Buffer.alloc(4);
  size.writeUInt32LE(header.length);
  return [size, header, ...buffers];
}

interface ArrayRef {
  $array: number;
  dtype: DType;
  shape: number[];
}

function revive(value: unknown, buffers: Buffer[]): unknown {
  if (Array.isArray(value)) return value.map((v) => revive(v, buffers));
  if (typeof value !== "object" || value === null) return value;
  if ("$array" in value) {
    const ref = value as ArrayRef;
    const ctor = DTYPES[ref.dtype];
    const bytes = buffers[ref.$array];
    if (!ctor || !bytes) throw new Error(`frame refers to a missing or unknown array ${JSON.stringify(ref)}`);
    // Copy into a fresh, aligned buffer: typed arrays cannot view unaligned offsets.
    const copy = new Uint8Array(bytes).buffer;
    return ndarray(new ctor(copy), ref.shape, ref.dtype);
  }
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v, buffers)]));
}

/** Incremental decoder: push stream chunks in, get whole messages out. */
export class FrameDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  // Bytes the frame in progress needs before it can be parsed; avoids re-joining a large frame's
  // chunks on every push.
  private need = 4;

  push(chunk: Buffer): unknown[] {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    const messages: unknown[] = [];
    for (let message = this.next(); message !== undefined; message = this.next()) messages.push(message);
    return messages;
  }

  private next(): unknown {
    if (this.pendingBytes < this.need) return undefined;
    const data = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    this.pending = [data];
    const headerSize = data.readUInt32LE(0);
    this.need = 4 + headerSize;
    if (data.length < this.need) return undefined;
    const header = JSON.parse(data.subarray(4, 4 + headerSize).toString("utf8")) as { buffers?: number[] };
    const sizes = header.buffers ?? [];
    const total = 4 + headerSize + sizes.reduce((a, b) => a + b, 0);
    this.need = total;
    if (data.length < total) return undefined;
    const buffers: Buffer[] = [];
    let offset = 4 + headerSize;
    for (const size of sizes) {
      buffers.push(data.subarray(offset, offset + size));
      offset += size;
    }
    delete header.buffers;
    const message = revive(header, buffers);
    this.pending = [data.subarray(total)];
    this.pendingBytes = data.length - total;
    this.need = 4;
    return message;
  }
}
