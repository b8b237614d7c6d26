// Reading a data file of records: a JSON array, JSON Lines with one object per line, a CSV file
// with a header row (by its .csv extension) or, asynchronously, a Parquet file. Each record keeps
// where it came from, so errors can name the file and the record (and line).
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parse } from "csv-parse/sync";
import { parquetReadObjects } from "hyparquet";
import { inputError } from "../errors.js";
import { sha256 } from "../io/store.js";

export interface SourcedRecord {
  value: unknown;
  /** "record 3" (0-based) in a JSON array; "record 3 (line 5)" in JSON Lines; "row 3 (line 4)" in CSV. */
  where: string;
}

export interface RecordFile {
  records: SourcedRecord[];
  /** sha256 of the file's bytes, recorded with runs so a changed dataset is noticed. */
  sha256: string;
}

function readBytes(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw inputError(file, undefined, code === "ENOENT" ? "no such file" : `cannot read the file (${code})`);
  }
}

export function readRecords(file: string): RecordFile {
  const bytes = readBytes(file);

  const text = bytes.toString("utf8").replace(/^\uFEFF/, "");
  let records: SourcedRecord[];
  if (extname(file).toLowerCase() === ".csv") {
    records = readCsv(file, text);
  } else if (text.trimStart().startsWith("[")) {
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

// Rows are numbered from 1 under the header (as a spreadsheet shows them, less the header); the
// line is where the row ends, since quoted fields may span lines.
function readCsv(file: string, text: string): SourcedRecord[] {
  let rows: { record: Record<string, string>; info: { lines: number } }[];
  try {
    rows = parse(text, { columns: true, info: true, skip_empty_lines: true, relax_column_count: false });
  } catch (err) {
    throw inputError(file, undefined, `not valid CSV (${(err as Error).message}); fix the file`);
  }
  return rows.map(({ record, info }, i) => ({ value: record, where: `row ${i + 1} (line ${info.lines})` }));
}

/** readRecords, plus Parquet files (by their .parquet extension), one record per row. */
export async function readTableRecords(file: string): Promise<RecordFile> {
  if (extname(file).toLowerCase() !== ".parquet") return readRecords(file);
  const bytes = readBytes(file);
  let rows: Record<string, unknown>[];
  try {
    rows = await parquetReadObjects({
      file: new Uint8Array(bytes).buffer,
    });
  } catch (err) {
    throw inputError(file, undefined, `not a readable Parquet file (${(err as Error).message})`);
  }
  if (rows.length === 0) throw inputError(file, undefined, "the file has no records");
  return { records: rows.map((value, i) => ({ value, where: `row ${i + 1}` })), sha256: sha256(bytes) };
}
