import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  encodeCsv,
  encodeNpy,
  riskDiffBatchesTable,
  riskDiffTable,
  tableFromRows,
  writeCsv,
  writeNpy,
  writeParquet,
  writeRiskDiffTables,
  type NpyArray,
  type Table,
} from "../src/components/io/tables.js";
import { computeRiskDiff, type RoutedSample } from "../src/components/method/riskdiff.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const PYTHON = join(ROOT, "engine/.venv/bin/python");

function runPython(script: string, ...args: string[]): unknown {
  const res = spawnSync(PYTHON, ["-c", script, ...args], { encoding: "utf8" });
  assert.equal(res.status, 0, `python failed: ${res.error ?? ""}${res.stderr}`);
  return JSON.parse(res.stdout);
}

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "tables-"));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("npy: numpy loads every dtype with the same shape and values", () => {
  const cases: [string, NpyArray, number[]][] = [
    ["float32", Float32Array.from([0.5, -1.25, 3e-8, 1e30, 7, 8]), [2, 3]],
    ["float64", Float64Array.from([Math.PI, -0, 1e-300, 2 ** 60]), [4]],
    ["uint8", Uint8Array.from({ length: 24 }, (_, i) => (i * 37) % 256), [2, 3, 4]],
    ["uint16", Uint16Array.from([0, 1, 65535, 300, 64, 63]), [3, 1, 2]],
    ["int32", Int32Array.from([-(2 ** 31), 2 ** 31 - 1, 0, -5]), [2, 2]],
    ["float32", new Float32Array(0), [0, 16, 64]],
    ["int32", Int32Array.from([9]), []],
  ];
  withDir((dir) => {
    cases.forEach(([, data, shape], i) => writeNpy(join(dir, `a${i}.npy`), data, shape));
    const got = runPython(
      `
import json, sys
import numpy as np
out = []
for i in range(int(sys.argv[2])):
    a = np.load(f"{sys.argv[1]}/a{i}.npy", allow_pickle=False)
    out.append({"dtype": str(a.dtype), "shape": list(a.shape), "values": a.ravel().tolist(),
                "c": bool(a.flags.c_contiguous)})
print(json.dumps(out))
`,
      dir,
      String(cases.length),
    ) as { dtype: string; shape: number[]; values: number[]; c: boolean }[];
    cases.forEach(([dtype, data, shape], i) => {
      assert.equal(got[i]?.dtype, dtype, `case ${i}`);
      assert.deepEqual(got[i]?.shape, shape, `case ${i}`);
      assert.deepEqual(got[i]?.values, [...data], `case ${i}`);
    });
    // no temporary files left behind
    assert.equal(readdirSync(dir).length, cases.length);
  });
});

test("npy: header is v1.0, 64-byte aligned, and the shape must match the data", () => {
  const [header] = encodeNpy(new Float32Array(6), [2, 3]);
  assert.ok(header);
  assert.equal(header.length % 64, 0);
  assert.deepEqual([...header.subarray(0, 8)], [0x93, 78, 85, 77, 80, 89, 1, 0]);
  assert.equal(header.at(-1), 10);
  assert.match(
    Buffer.from(header).toString("latin1"),
    /'descr': '<f4', 'fortran_order': False, 'shape': \(2, 3\), }/,
  );
  assert.throws(() => encodeNpy(new Float32Array(5), [2, 3]), /does not hold 5 values/);
});

const MIXED: Table = tableFromRows(
  [
    { name: "id", type: "int" },
    { name: "x", type: "double" },
    { name: "text", type: "string" },
  ],
  [
    [1, 0.1, "plain"],
    [-7, 1e-7, 'has "quotes", and a comma'],
    [2 ** 40, -2.5, "line\nbreak"],
    [0, 1 / 3, " padded "],
    [42, 123456789.125, "ünïcødé ✓"],
  ],
);

const READ_BACK = `
import json, sys
import pandas as pd
df = pd.read_parquet(sys.argv[1]) if sys.argv[1].endswith(".parquet") else pd.read_csv(sys.argv[1], keep_default_na=False)
print(json.dumps({"columns": list(df.columns), "kinds": [df[c].dtype.kind if c != "text" else
  ("str" if pd.api.types.is_string_dtype(df[c]) else str(df[c].dtype)) for c in df.columns],
  "rows": df.astype(object).values.tolist()}))
`;

test("csv and parquet round-trip through pandas with typed columns", () => {
  withDir((dir) => {
    writeCsv(join(dir, "t.csv"), MIXED);
    writeParquet(join(dir, "t.parquet"), MIXED);
    const expected = [0, 1, 2, 3, 4].map((r) => MIXED.map((c) => c.values[r]));
    for (const file of ["t.csv", "t.parquet"]) {
      const got = runPython(READ_BACK, join(dir, file)) as {
        columns: string[];
        kinds: string[];
        rows: unknown[];
      };
      assert.deepEqual(got.columns, ["id", "x", "text"], file);
      assert.deepEqual(got.kinds, ["i", "f", "str"], file);
      assert.deepEqual(got.rows, expected, file);
    }
  });
  assert.equal(encodeCsv(MIXED).split("\n")[2], '-7,1e-7,"has ""quotes"", and a comma"');
});

test("tables reject ragged columns, non-integers in int columns and mistyped rows", () => {
  assert.throws(
    () =>
      encodeCsv([
        { name: "a", type: "int", values: [1, 2] },
        { name: "b", type: "double", values: [1] },
      ]),
    /column b has 1 rows, not 2/,
  );
  assert.throws(() => encodeCsv([{ name: "a", type: "int", values: [1.5] }]), /not an integer/);
  assert.throws(
    () => tableFromRows([{ name: "a", type: "string" }], [[3]]),
    /row 0 column a should be string/,
  );
});

test("risk_diff tables: rows, order and values survive CSV and Parquet", () => {
  const tok = (...rows: number[][]) => Uint8Array.from(rows.flat());
  const batches: RoutedSample[][] = [
    [
      { label: "safe", expertIds: tok([0, 1, 2, 3], [0, 2, 2, 0]) },
      { label: "unsafe", expertIds: tok([3, 1, 1, 0], [3, 0, 1, 2]) },
    ],
    [
      { label: "safe", expertIds: tok([0, 1, 0, 1]) },
      { label: "unsafe", expertIds: tok([3, 2, 1, 2], [3, 1, 1, 3]) },
    ],
  ];
  const r = computeRiskDiff(batches, { numLayers: 4, moeLayers: [1, 3], numExperts: 4, topK: 2 });
  const perBatch = riskDiffBatchesTable(r);
  const agg = riskDiffTable(r);
  assert.deepEqual(
    perBatch.map((c) => c.name),
    "batch_idx layer expert label a_safe d_safe a_unsafe d_unsafe a_safe_n a_unsafe_n risk_diff".split(" "),
  );
  assert.deepEqual(
    agg.map((c) => c.name),
    "layer expert label a_safe d_safe a_unsafe d_unsafe a_safe_n a_unsafe_n risk_diff std ci_low ci_high frac_positive n_batches".split(
      " ",
    ),
  );
  const col = (t: Table, name: string) =>
    Array.from<string | number>(t.find((c) => c.name === name)?.values ?? []);
  assert.equal(col(perBatch, "label").length, 16);
  assert.deepEqual(col(perBatch, "label").slice(6, 9), ["L03_E02", "L03_E03", "L01_E00"]);
  assert.deepEqual(col(perBatch, "batch_idx").slice(6, 9), [0, 0, 1]);
  // mean risk_diff: L01 [-0.75, -0.25, 0, 1], L03 [-0.5, 0.5, 0, 0]; ties by (layer, expert)
  assert.deepEqual(col(agg, "label"), [
    "L01_E03",
    "L03_E01",
    "L01_E02",
    "L03_E02",
    "L03_E03",
    "L01_E01",
    "L03_E00",
    "L01_E00",
  ]);
  const rd = col(agg, "risk_diff") as number[];
  assert.ok(rd.every((v, i) => i === 0 || v <= (rd[i - 1] as number)));
  assert.deepEqual(col(agg, "n_batches"), new Array(8).fill(2));

  withDir((dir) => {
    writeRiskDiffTables(dir, r);
    assert.deepEqual(readdirSync(dir).sort(), [
      "risk_diff.csv",
      "risk_diff.parquet",
      "risk_diff_batches.csv",
      "risk_diff_batches.parquet",
    ]);
    assert.equal(
      readFileSync(join(dir, "risk_diff.csv"), "utf8").split("\n")[1]?.slice(0, 19),
      "1,3,L01_E03,0,3,4,0",
    );
    const got = runPython(
      `
import json, sys
import pandas as pd
out = {}
for name in ["risk_diff", "risk_diff_batches"]:
    for ext in ["csv", "parquet"]:
        p = f"{sys.argv[1]}/{name}.{ext}"
        df = pd.read_csv(p) if ext == "csv" else pd.read_parquet(p)
        out[f"{name}.{ext}"] = {"kinds": {c: df[c].dtype.kind if c != "label" else "str" if
          pd.api.types.is_string_dtype(df[c]) else "?" for c in df.columns},
          "cols": {c: df[c].tolist() for c in df.columns}}
print(json.dumps(out))
`,
      dir,
    ) as Record<string, { kinds: Record<string, string>; cols: Record<string, unknown[]> }>;
    for (const [name, table] of [
      ["risk_diff", agg],
      ["risk_diff_batches", perBatch],
    ] as const) {
      for (const ext of ["csv", "parquet"]) {
        const file = got[`${name}.${ext}`];
        assert.ok(file, `${name}.${ext}`);
        for (const c of table) {
          const kind = c.type === "int" ? "i" : c.type === "double" ? "f" : "str";
          assert.equal(file.kinds[c.name], kind, `${name}.${ext} ${c.name} dtype`);
          // CSV stores shortest round-trip decimals, so doubles compare exactly too
          assert.deepEqual(
            file.cols[c.name],
            Array.from<string | number>(c.values),
            `${name}.${ext} ${c.name}`,
          );
        }
      }
    }
  });
});
