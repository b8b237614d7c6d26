// Open file formats for results: .npy for arrays, CSV and Parquet for row tables. Everything here
// loads in numpy/pandas without this project, and every file is written atomically.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parquetReadObjects } from "hyparquet";
import { parquetWriteBuffer } from "hyparquet-writer";
import { UserError, zodProblem } from "../errors.js";
import { RiskDiffRow } from "./run-files.js";
import { readInputFile, writeFileAtomic } from "./store.js";
import type { ExpertRef } from "../domain.js";
import { expertLabel, type RiskDiffResult } from "../method/riskdiff.js";

// ---- .npy (format v1.0, little-endian, C order)

export type NpyArray = Float32Array | Float64Array | Uint8Array | Uint16Array | Int32Array;

function npyDescr(data: NpyArray): string {
  if (data instanceof Float32Array) return "<f4";
  if (data instanceof Float64Array) return "<f8";
  if (data instanceof Uint8Array) return "|u1";
  if (data instanceof Uint16Array) return "<u2";
  return "<i4";
}

/** The bytes of an .npy file, as chunks (header, data) to avoid copying the data. */
export function encodeNpy(data: NpyArray, shape: readonly number[]): Uint8Array[] {
  const size = shape.reduce((a, n) => a * n, 1);
  if (!shape.every((n) => Number.isInteger(n) && n >= 0) || size !== data.length) {
    throw new Error(`encodeNpy: shape [${shape.join(", ")}] does not hold ${data.length} values`);
  }
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  const dict = `{'descr': '${npyDescr(data)}', 'fortran_order': False, 'shape': ${dims}, }`;
  // magic(6) + version(2) + header length(2) + header, padded with spaces so data starts on a
  // 64-byte boundary (what numpy itself writes), ending in a newline.
  const total = Math.ceil((10 + dict.length + 1) / 64) * 64;
  const header = new Uint8Array(total);
  header.set([0x93, ...Buffer.from("NUMPY", "latin1"), 1, 0]);
  new DataView(header.buffer).setUint16(8, total - 10, true);
  header.set(Buffer.from(dict.padEnd(total - 11, " ") + "\n", "latin1"), 10);
  // Typed arrays hold the host's byte order: little-endian on the hosts steermoe runs on (x86-64, arm64).
  return [header, new Uint8Array(data.buffer, data.byteOffset, data.byteLength)];
}

export function writeNpy(path: string, data: NpyArray, shape: readonly number[]): void {
  writeFileAtomic(path, encodeNpy(data, shape));
}

/** A float .npy file (f4 or f8, C order), as float64 values and its shape. */
/** The parts of .npy bytes (format versions 1–3, C order): dtype descr, shape, data. Throws Error. */
export function parseNpy(bytes: Buffer): { descr: string; shape: number[]; body: Buffer } {
  if (bytes.subarray(0, 6).toString("latin1") !== "\x93NUMPY") throw new Error("not an .npy file");
  const major = bytes[6]!;
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = bytes.subarray(start, start + headerLength).toString("latin1");
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || shape === undefined || /'fortran_order':\s*True/.test(header))
    throw new Error(`expected a C-order array, got the header ${header.trim()}`);
  const dims = shape
    .split(",")
    .filter((d) => d.trim() !== "")
    .map(Number);
  return { descr, shape: dims, body: bytes.subarray(start + headerLength) };
}

export function readNpy(path: string): { data: Float64Array; shape: number[] } {
  const bytes = readInputFile(path);
  let npy;
  try {
    npy = parseNpy(bytes);
  } catch (err) {
    throw new UserError(`${path}: ${(err as Error).message}`);
  }
  const { descr, shape, body } = npy;
  const width = { "<f4": 4, "<f8": 8 }[descr];
  if (!width) throw new UserError(`${path}: expected a float32 or float64 C-order array, got ${descr}`);
  const count = shape.reduce((a, n) => a * n, 1);
  if (body.length !== count * width) throw new UserError(`${path}: shape [${shape}] does not match its data`);
  const copy = new Uint8Array(body).buffer; // aligned for the typed array
  return { data: Float64Array.from(width === 4 ? new Float32Array(copy) : new Float64Array(copy)), shape };
}

// ---- Row tables (column-oriented), written as CSV and Parquet

export type Column =
  | { name: string; type: "int" | "double"; values: ArrayLike<number> }
  | { name: string; type: "string"; values: readonly string[] };
export type Table = readonly Column[];
export type ColumnType = Column["type"];

/** Builds a table from rows; each row lists values in `header` order. */
export function tableFromRows(
  header: readonly { name: string; type: ColumnType }[],
  rows: readonly (readonly (string | number)[])[],
): Table {
  return header.map(({ name, type }, c) => {
    const values = rows.map((row, r) => {
      const v = row[c];
      if (type === "string" ? typeof v !== "string" : typeof v !== "number") {
        throw new Error(`tableFromRows: row ${r} column ${name} should be ${type}, got ${String(v)}`);
      }
      return v;
    });
    return type === "string"
      ? { name, type, values: values as string[] }
      : { name, type, values: values as number[] };
  });
}

function rowCount(table: Table): number {
  const n = table[0]?.values.length ?? 0;
  for (const col of table) {
    if (col.values.length !== n)
      throw new Error(`table column ${col.name} has ${col.values.length} rows, not ${n}`);
    if (col.type === "int") {
      for (let i = 0; i < n; i++) {
        if (!Number.isSafeInteger(col.values[i])) {
          throw new Error(`table column ${col.name} row ${i}: ${col.values[i]} is not an integer`);
        }
      }
    }
  }
  return n;
}

function csvField(v: string): string {
  return /[",\r\n]/.test(v) || v !== v.trim() ? `"${v.replace(/"/g, '""')}"` : v;
}

// Shortest round-trip decimal; non-finite values in the spellings pandas reads back as floats.
function csvNumber(v: number): string {
  if (Number.isNaN(v)) return "nan";
  if (v === Infinity) return "inf";
  if (v === -Infinity) return "-inf";
  return String(v);
}

export function encodeCsv(table: Table): string {
  const n = rowCount(table);
  const lines = [table.map((c) => csvField(c.name)).join(",")];
  for (let i = 0; i < n; i++) {
    lines.push(
      table
        .map((c) =>
          c.type === "string" ? csvField(c.values[i] as string) : csvNumber(c.values[i] as number),
        )
        .join(","),
    );
  }
  return lines.join("\n") + "\n";
}

export function writeCsv(path: string, table: Table): void {
  writeFileAtomic(path, encodeCsv(table));
}

// int → INT64, double → DOUBLE, string → UTF8; all required (non-null), so pandas gets int64,
// float64 and object columns.
export function encodeParquet(table: Table): Uint8Array {
  const n = rowCount(table);
  const columnData = table.map((col) => {
    if (col.type === "string")
      return { name: col.name, data: [...col.values], type: "STRING" as const, nullable: false };
    if (col.type === "int") {
      const data = new BigInt64Array(n);
      for (let i = 0; i < n; i++) data[i] = BigInt(col.values[i] as number);
      return { name: col.name, data, type: "INT64" as const, nullable: false };
    }
    return { name: col.name, data: Float64Array.from(col.values), type: "DOUBLE" as const, nullable: false };
  });
  return new Uint8Array(parquetWriteBuffer({ columnData, createdBy: "steermoe" }));
}

export function writeParquet(path: string, table: Table): void {
  writeFileAtomic(path, encodeParquet(table));
}

/** Writes `<base>.csv` and `<base>.parquet`. */
export function writeTable(base: string, table: Table): void {
  writeCsv(`${base}.csv`, table);
  writeParquet(`${base}.parquet`, table);
}

// ---- RiskDiff row tables (docs/run-folder.md)

/** One row per batch × MoE layer × expert, in that order. */
export function riskDiffBatchesTable(r: RiskDiffResult): Table {
  const { moeLayers, numExperts: E } = r.shape;
  const LE = moeLayers.length * E;
  const n = r.numBatches * LE;
  const batchIdx = new Int32Array(n);
  const layer = new Int32Array(n);
  const expert = new Int32Array(n);
  const label = Array.from({ length: LE }, (_, i) =>
    expertLabel(moeLayers[Math.floor(i / E)] as number, i % E),
  );
  for (let i = 0; i < n; i++) {
    const cell = i % LE;
    batchIdx[i] = Math.floor(i / LE);
    layer[i] = moeLayers[Math.floor(cell / E)] as number;
    expert[i] = cell % E;
  }
  return [
    { name: "batch_idx", type: "int", values: batchIdx },
    { name: "layer", type: "int", values: layer },
    { name: "expert", type: "int", values: expert },
    { name: "label", type: "string", values: Array.from({ length: n }, (_, i) => label[i % LE] as string) },
    { name: "a_safe", type: "int", values: r.aSafe },
    { name: "d_safe", type: "int", values: r.dSafe },
    { name: "a_unsafe", type: "int", values: r.aUnsafe },
    { name: "d_unsafe", type: "int", values: r.dUnsafe },
    { name: "a_safe_n", type: "double", values: r.aSafeN },
    { name: "a_unsafe_n", type: "double", values: r.aUnsafeN },
    { name: "risk_diff", type: "double", values: r.riskDiff },
  ];
}

/** (layer, expert) cells by mean risk_diff descending, ties by (layer, expert). */
function rankedCells(r: RiskDiffResult): number[] {
  const g = r.aggregate.riskDiff;
  return Array.from({ length: r.shape.moeLayers.length * r.shape.numExperts }, (_, i) => i).sort(
    (x, y) => (g[y] as number) - (g[x] as number) || x - y,
  );
}

/** Every expert, in the order of the risk_diff table's rows. */
export function riskDiffRanking(r: RiskDiffResult): ExpertRef[] {
  const E = r.shape.numExperts;
  return rankedCells(r).map((i) => ({
    layer: r.shape.moeLayers[Math.floor(i / E)] as number,
    expert: i % E,
  }));
}

/** One row per (layer, expert), sorted by mean risk_diff descending, ties by (layer, expert). */
export function riskDiffTable(r: RiskDiffResult): Table {
  const { moeLayers, numExperts: E } = r.shape;
  const g = r.aggregate;
  const order = rankedCells(r);
  const pick = (src: ArrayLike<number>) => Float64Array.from(order, (i) => src[i] as number);
  const layers = order.map((i) => moeLayers[Math.floor(i / E)] as number);
  const experts = order.map((i) => i % E);
  return [
    { name: "layer", type: "int", values: layers },
    { name: "expert", type: "int", values: experts },
    {
      name: "label",
      type: "string",
      values: order.map((_, k) => expertLabel(layers[k] as number, experts[k] as number)),
    },
    { name: "a_safe", type: "int", values: pick(g.aSafe) },
    { name: "d_safe", type: "int", values: pick(g.dSafe) },
    { name: "a_unsafe", type: "int", values: pick(g.aUnsafe) },
    { name: "d_unsafe", type: "int", values: pick(g.dUnsafe) },
    { name: "a_safe_n", type: "double", values: pick(g.aSafeN) },
    { name: "a_unsafe_n", type: "double", values: pick(g.aUnsafeN) },
    { name: "risk_diff", type: "double", values: pick(g.riskDiff) },
    { name: "std", type: "double", values: pick(g.std) },
    { name: "ci_low", type: "double", values: pick(g.ciLow) },
    { name: "ci_high", type: "double", values: pick(g.ciHigh) },
    { name: "frac_positive", type: "double", values: pick(g.fracPositive) },
    { name: "n_batches", type: "int", values: order.map(() => g.nBatches) },
  ];
}

/** RUN/risk_diff.parquet, in its rows' order (mean risk_diff descending). */
export async function readRiskDiffTable(path: string): Promise<RiskDiffRow[]> {
  const bytes = readFileSync(path);
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  let rows: Record<string, unknown>[];
  try {
    rows = await parquetReadObjects({ file });
  } catch (err) {
    throw new UserError(`${path}: not a readable Parquet table (${(err as Error).message})`);
  }
  return rows.map((row, i) => {
    const values = Object.entries(row).map(([k, v]) => {
      const n = typeof v === "bigint" ? Number(v) : v;
      return [k, typeof n === "number" && !Number.isFinite(n) ? null : n];
    });
    const parsed = RiskDiffRow.safeParse(Object.fromEntries(values));
    if (!parsed.success) throw new UserError(`${path}: row ${i + 1} ${zodProblem(parsed.error)}`);
    return parsed.data;
  });
}

/** Writes risk_diff_batches.{csv,parquet} and risk_diff.{csv,parquet} into `dir`. */
export function writeRiskDiffTables(dir: string, r: RiskDiffResult): void {
  writeTable(join(dir, "risk_diff_batches"), riskDiffBatchesTable(r));
  writeTable(join(dir, "risk_diff"), riskDiffTable(r));
}
