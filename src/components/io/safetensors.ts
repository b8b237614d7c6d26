// Reading the safetensors format (8-byte LE header size, JSON header, raw little-endian data):
// the routing shards the engine writes are read back here without Python.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import { z } from "zod";
import { DTYPES, ndarray, type DType, type NDArray } from "../engine/frames.js";
import { UserError, zodProblem } from "../errors.js";

const BY_CODE: Record<string, DType> = {
  U8: "uint8",
  U16: "uint16",
  I32: "int32",
  I64: "int64",
  F16: "float16",
  F32: "float32",
  F64: "float64",
};

const Entry = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int(), z.number().int()]),
});

/** One tensor as stored: its dtype code (F32, BF16, ...), shape and raw little-endian bytes. */
export interface StoredTensor {
  dtype: string;
  shape: number[];
  bytes: Buffer;
}

/**
 * The JSON header alone (every tensor's entry, and the metadata), read without the tensors' data:
 * enough to check a file before a model is loaded.
 */
export function readSafetensorsHeader(path: string): { header: Record<string, unknown>; headerSize: number } {
  if (!existsSync(path)) throw new UserError(`${path} is missing`);
  const bad = (why: string) => new UserError(`${path} is not a readable safetensors file: ${why}`);
  const fd = openSync(path, "r");
  try {
    const fileSize = fstatSync(fd).size;
    if (fileSize < 8) throw bad("too short");
    const prefix = Buffer.alloc(8);
    readSync(fd, prefix, 0, 8, 0);
    const headerSize = Number(prefix.readBigUInt64LE(0));
    if (8 + headerSize > fileSize) throw bad("header runs past the end");
    const text = Buffer.alloc(headerSize);
    readSync(fd, text, 0, headerSize, 8);
    let header: unknown;
    try {
      header = JSON.parse(text.toString("utf8"));
    } catch {
      throw bad("the header is not JSON");
    }
    if (typeof header !== "object" || header === null || Array.isArray(header))
      throw bad("the header is not a JSON object");
    return { header: header as Record<string, unknown>, headerSize };
  } finally {
    closeSync(fd);
  }
}

/** The stored tensors whose names `wanted` accepts (all by default), any dtype, and the metadata. */
export function readSafetensorsBytes(
  path: string,
  wanted: (name: string) => boolean = () => true,
): {
  tensors: Record<string, StoredTensor>;
  metadata: Record<string, string>;
} {
  const { header, headerSize } = readSafetensorsHeader(path);
  const file = readFileSync(path);
  const bad = (why: string) => new UserError(`${path} is not a readable safetensors file: ${why}`);
  const tensors: Record<string, StoredTensor> = {};
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(header)) {
    if (name === "__metadata__") {
      const parsed = z.record(z.string(), z.string()).safeParse(value);
      if (!parsed.success) throw bad("its metadata is not a map of strings");
      metadata = parsed.data;
      continue;
    }
    if (!wanted(name)) continue;
    const parsed = Entry.safeParse(value);
    if (!parsed.success) throw bad(`tensor ${name}: ${zodProblem(parsed.error)}`);
    const {
      dtype,
      shape,
      data_offsets: [begin, end],
    } = parsed.data;
    const start = 8 + headerSize + begin;
    if (start + (end - begin) > file.length) throw bad(`tensor ${name} runs past the end`);
    tensors[name] = { dtype, shape, bytes: file.subarray(start, 8 + headerSize + end) };
  }
  return { tensors, metadata };
}

/** The tensors whose names `wanted` accepts (all by default) as arrays, and the metadata. */
export function readSafetensors(
  path: string,
  wanted: (name: string) => boolean = () => true,
): {
  tensors: Record<string, NDArray>;
  metadata: Record<string, string>;
} {
  const stored = readSafetensorsBytes(path, wanted);
  const tensors: Record<string, NDArray> = {};
  for (const [name, { dtype: code, shape, bytes }] of Object.entries(stored.tensors)) {
    const dtype = BY_CODE[code];
    if (!dtype)
      throw new UserError(
        `${path} is not a readable safetensors file: tensor ${name} has unsupported dtype ${code}`,
      );
    tensors[name] = ndarray(new DTYPES[dtype](new Uint8Array(bytes).buffer), shape, dtype);
  }
  return { tensors, metadata: stored.metadata };
}
