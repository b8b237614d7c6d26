// The safetensors format (8-byte LE header size, JSON header, raw little-endian data), written
// and read here so routing files need nothing beyond `safetensors.numpy.load_file` to open.
import { readFileSync } from "node:fs";
import { z } from "zod";
import { DTYPES, ndarray, type DType, type NDArray } from "../engine/frames.js";
import { UserError } from "../errors.js";
import { writeFileAtomic } from "./store.js";

const CODES: Record<DType, string> = {
  uint8: "U8",
  uint16: "U16",
  int32: "I32",
  int64: "I64",
  float16: "F16",
  float32: "F32",
  float64: "F64",
};
const BY_CODE = Object.fromEntries(Object.entries(CODES).map(([k, v]) => [v, k as DType]));

const Entry = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int(), z.number().int()]),
});

export function writeSafetensors(
  path: string,
  tensors: Record<string, NDArray>,
  metadata: Record<string, string> = {},
): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const chunks: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: CODES[t.dtype], shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // data starts 8-byte aligned
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileAtomic(path, [size, Buffer.from(json), ...chunks]);
}

export function readSafetensors(path: string): {
  tensors: Record<string, NDArray>;
  metadata: Record<string, string>;
} {
  const file = readFileSync(path);
  const bad = (why: string) => new UserError(`${path} is not a readable safetensors file: ${why}`);
  if (file.length < 8) throw bad("too short");
  const headerSize = Number(file.readBigUInt64LE(0));
  if (8 + headerSize > file.length) throw bad("header runs past the end");
  const header = JSON.parse(file.subarray(8, 8 + headerSize).toString("utf8")) as Record<string, unknown>;
  const tensors: Record<string, NDArray> = {};
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = z.record(z.string(), z.string()).parse(value);
      continue;
    }
    const entry = Entry.parse(value);
    const dtype = BY_CODE[entry.dtype];
    if (!dtype) throw bad(`tensor ${name} has unsupported dtype ${entry.dtype}`);
    const [begin, end] = entry.data_offsets;
    const start = 8 + headerSize + begin;
    if (start + (end - begin) > file.length) throw bad(`tensor ${name} runs past the end`);
    const copy = new Uint8Array(file.subarray(start, 8 + headerSize + end)).buffer;
    tensors[name] = ndarray(new DTYPES[dtype](copy), entry.shape, dtype);
  }
  return { tensors, metadata };
}
