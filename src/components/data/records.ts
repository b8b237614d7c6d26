// Reading a data file of records: a JSON array, or JSON Lines with one object per line. Each
// record keeps where it came from, so errors can name the file and the record (and line).
import { readFileSync } from "node:fs";
import { inputError } from "../errors.js";
import { sha256 } from "../io/store.js";

export interface SourcedRecord {
  value: unknown;
  /** "record 3" (0-based) in a JSON array; "record 3 (line 5)" in JSON Lines. */
  where: string;
}

export interface RecordFile {
  records: SourcedRecord[];
  /** sha256 of the file's bytes, recorded with runs so a changed dataset is noticed. */
  sha256: string;
}

export function readRecords(file: string): RecordFile {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw inputError(file, undefined, code === "ENOENT" ? "no such file" : `cannot read the file (${code})`);
  }

  const text = bytes.toString("utf8").replace(/^\uFEFF/, "");
  let records: SourcedRecord[];
  if (text.trimStart().startsWith("[")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw inputError(file, undefined, `not valid JSON (${(err as Error).message}); fix the file`);
    }
    if (!Array.isArray(parsed)) throw inputError(file, undefined, "expected a JSON array of records");
    records = parsed.map((value, i) => ({ value, where: `record ${i}` }));
  } else {
    records = [];
    text.split(/\r?\n/).forEach((line, i) => {
      if (line.trim() === "") return;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (err) {
        throw inputError(
          file,
          `line ${i + 1}`,
          `not valid JSON (${(err as Error).message}); expected a JSON array or one JSON object per line`,
        );
      }
      records.push({ value, where: `record ${records.length} (line ${i + 1})` });
    });
  }
  if (records.length === 0) throw inputError(file, undefined, "the file has no records");
  return { records, sha256: sha256(bytes) };
}
