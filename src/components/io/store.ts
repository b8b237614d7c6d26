// Files land whole or not at all: everything is written to a temporary name beside its target
// and renamed, so an interrupted run never leaves a half-written file behind. JSONL logs grow by
// appended lines instead. Reading parses with a schema and names the file, line and field at fault.
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { dirname, join, basename } from "node:path";
import { createHash } from "node:crypto";
import { isUtf8 } from "node:buffer";
import { z } from "zod";
import { inputError, UserError, zodProblem } from "../errors.js";

/** The most a file given as input (data, config, template, steering map) may hold. */
export const INPUT_LIMIT_BYTES = 2 ** 30;

/**
 * The bytes of a file the user named: a regular file (a FIFO or a device such as /dev/zero would
 * block or never end) of at most INPUT_LIMIT_BYTES, or a one-line error naming it.
 */
export function readInputFile(file: string, what = "file"): Buffer {
  const fail = (problem: string) => inputError(file, undefined, problem);
  let size: number;
  try {
    const stat = statSync(file);
    if (stat.isDirectory()) throw fail(`a folder, not a ${what}`);
    if (!stat.isFile()) throw fail("not a regular file (a pipe or a device); write it to a file first");
    size = stat.size;
  } catch (err) {
    if (err instanceof UserError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw fail(code === "ENOENT" ? `no such ${what}` : `cannot read the ${what} (${code})`);
  }
  if (size > INPUT_LIMIT_BYTES)
    throw fail(
      `${(size / 2 ** 30).toFixed(1)} GiB, over the ${INPUT_LIMIT_BYTES / 2 ** 30} GiB limit for a ${what}; split it`,
    );
  try {
    return readFileSync(file);
  } catch (err) {
    throw fail(`cannot read the ${what} (${(err as NodeJS.ErrnoException).code})`);
  }
}

/** Hex sha256, as sha256sum prints it. */
export function sha256(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export function writeFileAtomic(path: string, data: string | Uint8Array | readonly Uint8Array[]): void {
  // Checked first: an output file named by a folder (report --out DIR) is the user's slip.
  if (existsSync(path) && statSync(path).isDirectory())
    throw new UserError(`${path} is a folder; give a file name for the output`);
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
  try {
    const chunks = typeof data === "string" || data instanceof Uint8Array ? [data] : data;
    writeFileSync(tmp, "");
    for (const chunk of chunks) writeFileSync(tmp, chunk, { flag: "a" });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

export function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n");
}

export function writeJsonlAtomic(path: string, rows: readonly unknown[]): void {
  writeFileAtomic(path, rows.map((row) => JSON.stringify(row) + "\n").join(""));
}

/**
 * One line at the end of a JSONL file, synced to disk. A crash can tear at most this line; readers
 * of logs that may be torn (the judge cache) drop such a line.
 */
export function appendJsonl(path: string, row: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, "a");
  try {
    writeSync(fd, JSON.stringify(row) + "\n");
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * How a file's bytes become text: UTF-8, where a byte sequence that is not UTF-8 is an error
 * naming its offset; UTF-8 with such sequences replaced by U+FFFD; or Latin-1 (every byte is a
 * character, so nothing is refused).
 */
export const TextEncoding = z.enum(["utf8", "utf8-replace", "latin1"]);
export type TextEncoding = z.infer<typeof TextEncoding>;

/**
 * The text of `bytes` read as `encoding`. Invalid UTF-8 under "utf8" is an error naming `file`, the
 * byte offset and line, followed by `fix`: decoding would turn it into U+FFFD without a word.
 */
export function decodeText(bytes: Uint8Array, file: string, encoding: TextEncoding, fix: string): string {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (encoding === "latin1") return buffer.toString("latin1");
  const text = buffer.toString("utf8");
  if (encoding === "utf8-replace" || isUtf8(buffer)) return text;
  if ((buffer[0] === 0xff && buffer[1] === 0xfe) || (buffer[0] === 0xfe && buffer[1] === 0xff)) {
    throw new UserError(`${file}: UTF-16 text (it starts with a UTF-16 byte order mark), not UTF-8; ${fix}`);
  }
  const offset = invalidUtf8Offset(buffer, text);
  const line = buffer.subarray(0, offset).filter((b) => b === 0x0a).length + 1;
  throw new UserError(`${file}: invalid UTF-8 at byte ${offset} (line ${line}); ${fix}`);
}

/** The offset of the first U+FFFD in `text` that the bytes do not spell (EF BF BD): the decoder's. */
function invalidUtf8Offset(bytes: Buffer, text: string): number {
  let offset = 0;
  for (const char of text) {
    if (
      char === "\uFFFD" &&
      !(bytes[offset] === 0xef && bytes[offset + 1] === 0xbf && bytes[offset + 2] === 0xbd)
    )
      return offset;
    offset += Buffer.byteLength(char);
  }
  return offset;
}

const DAMAGED = "the file is damaged: rerun the command that wrote it";

function readText(path: string, missing: string): string {
  if (!existsSync(path)) throw new UserError(`${path} is missing${missing ? `: ${missing}` : ""}`);
  return decodeText(readFileSync(path), path, "utf8", DAMAGED);
}

function parseJson(text: string, path: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UserError(`${path}${where}: not valid JSON (${(err as Error).message})`);
  }
}

/** A JSON file parsed with `schema`; `missing` says what to do when the file is not there. */
export function readJson<S extends z.ZodType>(path: string, schema: S, missing = ""): z.infer<S> {
  const parsed = schema.safeParse(parseJson(readText(path, missing), path, ""));
  if (!parsed.success) throw new UserError(`${path} ${zodProblem(parsed.error)}`);
  return parsed.data;
}

/** Every line of a JSONL file parsed with `schema` (blank lines skipped). */
export function readJsonl<S extends z.ZodType>(path: string, schema: S, missing = ""): z.infer<S>[] {
  return parseJsonl(readText(path, missing), path, schema);
}

/**
 * The rows of an append-only log written with appendJsonl (train log, judge cache): none when the
 * file is missing. A last line cut short by a crash (no newline yet) is dropped and cut from the
 * file, so the next append starts on a line of its own; any other bad line is an error naming it.
 */
export function readJsonlLog<S extends z.ZodType>(path: string, schema: S): z.infer<S>[] {
  if (!existsSync(path)) return [];
  const bytes = readFileSync(path);
  // Cut at the last newline byte: a torn last line may end inside a multi-byte character.
  const complete = bytes.lastIndexOf(0x0a) + 1;
  if (complete < bytes.length) truncateSync(path, complete);
  return parseJsonl(decodeText(bytes.subarray(0, complete), path, "utf8", DAMAGED), path, schema);
}

function parseJsonl<S extends z.ZodType>(text: string, path: string, schema: S): z.infer<S>[] {
  const rows: z.infer<S>[] = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    const parsed = schema.safeParse(parseJson(line, path, ` line ${i + 1}`));
    if (!parsed.success) throw new UserError(`${path} line ${i + 1} ${zodProblem(parsed.error)}`);
    rows.push(parsed.data);
  });
  return rows;
}
