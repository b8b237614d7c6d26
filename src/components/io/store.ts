// Files land whole or not at all: everything is written to a temporary name beside its target
// and renamed, so an interrupted run never leaves a half-written file behind.
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, basename } from "node:path";

export function writeFileAtomic(path: string, data: string | Uint8Array | readonly Uint8Array[]): void {
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
