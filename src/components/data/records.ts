// Reading a data file of records: a JSON array, JSON Lines with one object per line, a CSV file
// with a header row (by its .csv extension) or, asynchronously, a Parquet file. Each record keeps
// where it came from, so errors can name the file and the record (and line). Text must be what it
// claims: bytes that are not UTF-8 (unless another encoding is asked for) and strings holding a
// lone UTF-16 surrogate are refused, and integers too large for a JSON number are read exactly.
import { extname } from "node:path";
import { parse } from "csv-parse/sync";
import { parquetReadObjects } from "hyparquet";
import { inputError, UserError } from "../errors.js";
import { decodeText, readInputFile, sha256, type TextEncoding } from "../io/store.js";

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

const ENCODING_FIX = "save the file as UTF-8, or read it with --encoding latin1 or utf8-replace";

// JSON numbers are doubles: integers past 2^53 lose digits, so ids 10000000000000001 and
// 10000000000000000 would parse to one value. Such an integer is read as its digits, a string.
// The pattern takes whole strings first, so digits inside a string are never touched.
const STRING_OR_NUMBER = /"[^"\\]*(?:\\.[^"\\]*)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

function parseJson(text: string): unknown {
  if (!/\d{16}/.test(text)) return JSON.parse(text);
  const exact = text.replace(STRING_OR_NUMBER, (token) =>
    /^-?\d+$/.test(token) && !Number.isSafeInteger(Number(token)) ? `"${token}"` : token,
  );
  try {
    return JSON.parse(exact);
  } catch {
    // The message (and its position) of the text as written.
    return JSON.parse(text);
  }
}

/** A bigint (Parquet INT64) as a number when exact, else its digits: the rule JSON integers follow. */
const exactInteger = (value: bigint) => (Number.isSafeInteger(Number(value)) ? Number(value) : String(value));

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The path of the first string (or key) in `value` holding a lone surrogate, and the surrogate. */
function loneSurrogate(value: unknown, path: string): { path: string; unit: string } | undefined {
  if (typeof value === "string") {
    const unit = LONE_SURROGATE.exec(value)?.[0];
    return unit === undefined ? undefined : { path, unit };
  }
  if (typeof value !== "object" || value === null) return undefined;
  for (const [key, item] of Object.entries(value)) {
    const at = Array.isArray(value) ? `${path}[${key}]` : path ? `${path}.${key}` : key;
    const found = loneSurrogate(key, at) ?? loneSurrogate(item, at);
    if (found) return found;
  }
  return undefined;
}

/** The records, refused when there are none or one holds text that is not text. */
function checked(file: string, records: SourcedRecord[]): SourcedRecord[] {
  if (records.length === 0) throw inputError(file, undefined, "the file has no records");
  for (const { value, where } of records) {
    const found = loneSurrogate(value, "");
    if (!found) continue;
    const unit = `\\u${found.unit.charCodeAt(0).toString(16)}`;
    throw inputError(
      file,
      found.path ? `${where} field ${found.path}` : where,
      `a lone surrogate ${unit} is not text (an escape cut from its pair); fix the record`,
    );
  }
  return records;
}

export function readRecords(file: string, encoding: TextEncoding = "utf8"): RecordFile {
  const bytes = readInputFile(file);

  const text = decodeText(bytes, file, encoding, ENCODING_FIX).replace(/^\uFEFF/, "");
  let records: SourcedRecord[];
  if (extname(file).toLowerCase() === ".csv") {
    records = readCsv(file, text);
  } else if (text.trimStart().startsWith("[")) {
    let parsed: unknown;
    try {
      parsed = parseJson(text);
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
        value = parseJson(line);
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
  return { records: checked(file, records), sha256: sha256(bytes) };
}

// Rows are numbered from 1 under the header (as a spreadsheet shows them, less the header); the
// line is where the row ends, since quoted fields may span lines.
function readCsv(file: string, text: string): SourcedRecord[] {
  let rows: { record: Record<string, string>; info: { lines: number } }[];
  // Two columns of one name would leave only the last one's values, unnoticed.
  const header = (names: string[]) => {
    const twice = names.find((name, i) => names.indexOf(name) !== i);
    if (twice !== undefined) throw inputError(file, "line 1", `column ${twice} appears twice in the header`);
    return names;
  };
  try {
    rows = parse(text, { columns: header, info: true, skip_empty_lines: true, relax_column_count: false });
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw inputError(file, undefined, `not valid CSV (${(err as Error).message}); fix the file`);
  }
  return rows.map(({ record, info }, i) => ({ value: record, where: `row ${i + 1} (line ${info.lines})` }));
}

/** A Parquet text cell whose bytes are not in the encoding asked for: found after the read, by row. */
class InvalidCell {
  constructor(readonly problem: string) {}
}

/** readRecords, plus Parquet files (by their .parquet extension), one record per row. */
export async function readTableRecords(file: string, encoding: TextEncoding = "utf8"): Promise<RecordFile> {
  if (extname(file).toLowerCase() !== ".parquet") return readRecords(file, encoding);
  const bytes = readInputFile(file);
  const stringFromBytes = (cell: Uint8Array | undefined) => {
    if (!cell) return cell;
    try {
      return decodeText(cell, "cell", encoding, ENCODING_FIX);
    } catch (err) {
      return new InvalidCell((err as Error).message.replace(/^cell: /, ""));
    }
  };
  let rows: Record<string, unknown>[];
  try {
    rows = await parquetReadObjects({ file: new Uint8Array(bytes).buffer, parsers: { stringFromBytes } });
  } catch (err) {
    throw inputError(file, undefined, `not a readable Parquet file (${(err as Error).message})`);
  }
  const records = rows.map((row, i) => {
    const where = `row ${i + 1}`;
    const value = Object.fromEntries(
      Object.entries(row).map(([column, cell]) => {
        if (cell instanceof InvalidCell) throw inputError(file, `${where} column ${column}`, cell.problem);
        return [column, typeof cell === "bigint" ? exactInteger(cell) : cell];
      }),
    );
    return { value, where };
  });
  return { records: checked(file, records), sha256: sha256(bytes) };
}

/**
 * A check that refuses an id seen before in `file` (results, caches and joins are keyed by id),
 * naming both records.
 */
export function uniqueIds(file: string): (id: string, where: string, field: string) => void {
  const first = new Map<string, string>();
  // `field` is where in the record the id is: "field id", "column BehaviorID".
  return (id, where, field) => {
    const earlier = first.get(id);
    if (earlier !== undefined)
      throw inputError(file, `${where} ${field}`, `duplicate id ${id} (also ${earlier}); ids must be unique`);
    first.set(id, where.replace(/ \(.*\)$/, ""));
  };
}
