import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  computeRiskDiff,
  expertLabel,
  ExpertSetSchema,
  randomExperts,
  selectExperts,
  type RoutedSample,
  type RoutingShape,
} from "../src/components/method/riskdiff.js";
import { mulberry32, tQuantile } from "../src/components/method/stats.js";
import { writeNpy } from "../src/components/io/tables.js";
import { UserError } from "../src/components/errors.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const PYTHON = join(ROOT, "engine/.venv/bin/python");

function runPython(script: string, ...args: string[]): string {
  const res = spawnSync(PYTHON, ["-c", script, ...args], { encoding: "utf8" });
  assert.equal(res.status, 0, `python failed: ${res.error ?? ""}${res.stderr}`);
  return res.stdout;
}

function close(actual: ArrayLike<number>, expected: readonly number[], tol = 1e-12, what = ""): void {
  assert.equal(actual.length, expected.length, `${what} length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i] as number;
    const e = expected[i] as number;
    assert.ok(Math.abs(a - e) <= tol, `${what}[${i}]: got ${a}, expected ${e}`);
  }
}

// Two MoE layers at decoder layers 1 and 3 of 4, 4 experts, top-2. Ids per token: [L0 slot0, L0
// slot1, L1 slot0, L1 slot1].
const SHAPE: RoutingShape = { numLayers: 4, moeLayers: [1, 3], numExperts: 4, topK: 2 };
const tok = (...rows: number[][]) => Uint8Array.from(rows.flat());
const HAND: RoutedSample[][] = [
  [
    { label: "safe", expertIds: tok([0, 1, 2, 3], [0, 2, 2, 0]) },
    { label: "unsafe", expertIds: tok([3, 1, 1, 0], [3, 0, 1, 2]) },
    // The repeated id 3 at the second layer must count once.
    { label: "safe", expertIds: Uint16Array.from([1, 0, 3, 3]) },
  ],
  [
    { label: "safe", expertIds: tok([0, 1, 0, 1]) },
    { label: "unsafe", expertIds: tok([3, 2, 1, 2], [3, 1, 1, 3]) },
  ],
];

test("hand-computed counts, rates and risk_diff per batch", () => {
  const r = computeRiskDiff(HAND, SHAPE);
  assert.deepEqual([...r.tokensSafe], [3, 1]);
  assert.deepEqual([...r.tokensUnsafe], [2, 2]);
  assert.deepEqual([...r.usable], [1, 1]);
  // [batch, layer, expert] flattened
  assert.deepEqual([...r.aSafe], [3, 2, 1, 0, 1, 0, 2, 2, 1, 1, 0, 0, 1, 1, 0, 0]);
  assert.deepEqual([...r.dSafe], [0, 1, 2, 3, 2, 3, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1]);
  assert.deepEqual([...r.aUnsafe], [1, 1, 0, 2, 1, 2, 1, 0, 0, 1, 1, 2, 0, 2, 1, 1]);
  assert.deepEqual([...r.dUnsafe], [1, 1, 2, 0, 1, 0, 1, 2, 2, 1, 1, 0, 2, 0, 1, 1]);
  close(r.aSafeN, [1, 2 / 3, 1 / 3, 0, 1 / 3, 0, 2 / 3, 2 / 3, 1, 1, 0, 0, 1, 1, 0, 0]);
  close(r.aUnsafeN, [0.5, 0.5, 0, 1, 0.5, 1, 0.5, 0, 0, 0.5, 0.5, 1, 0, 1, 0.5, 0.5]);
  close(r.riskDiff, [-0.5, -1 / 6, -1 / 3, 1, 1 / 6, 1, -1 / 6, -2 / 3, -1, -0.5, 0.5, 1, -1, 0, 0.5, 0.5]);
});

test("hand-computed aggregate over two batches", () => {
  const g = computeRiskDiff(HAND, SHAPE).aggregate;
  const rd0 = [-0.5, -1 / 6, -1 / 3, 1, 1 / 6, 1, -1 / 6, -2 / 3];
  const rd1 = [-1, -0.5, 0.5, 1, -1, 0, 0.5, 0.5];
  assert.equal(g.nBatches, 2);
  assert.deepEqual([...g.aSafe], [4, 3, 1, 0, 2, 1, 2, 2]);
  assert.deepEqual([...g.dSafe], [0, 1, 3, 4, 2, 3, 2, 2]);
  assert.deepEqual([...g.aUnsafe], [1, 2, 1, 4, 1, 4, 2, 1]);
  assert.deepEqual([...g.dUnsafe], [3, 2, 3, 0, 3, 0, 2, 3]);
  close(g.aSafeN, [1, 5 / 6, 1 / 6, 0, 2 / 3, 1 / 2, 1 / 3, 1 / 3]);
  close(g.aUnsafeN, [0.25, 0.5, 0.25, 1, 0.25, 1, 0.5, 0.25]);
  close(g.riskDiff, [-0.75, -1 / 3, 1 / 12, 1, -5 / 12, 0.5, 1 / 6, -1 / 12]);
  const sd = rd0.map((x, i) => Math.abs(x - (rd1[i] as number)) / Math.SQRT2);
  close(g.std, sd);
  // n = 2: half-width = t(0.975, 1) * sd / sqrt(2), t(0.975, 1) = tan(0.475π)
  const t1 = Math.tan(0.475 * Math.PI);
  close(
    g.ciLow,
    [...g.riskDiff].map((m, i) => m - (t1 * (sd[i] as number)) / Math.SQRT2),
    1e-9,
  );
  close(
    g.ciHigh,
    [...g.riskDiff].map((m, i) => m + (t1 * (sd[i] as number)) / Math.SQRT2),
    1e-9,
  );
  close(g.fracPositive, [0, 0, 0.5, 1, 0.5, 0.5, 0.5, 0.5]);
});

test("a batch lacking one label is excluded; one usable batch gives std 0 and CI [-1, 1]", () => {
  const onlySafe: RoutedSample[] = [{ label: "safe", expertIds: tok([0, 1, 2, 3]) }];
  const r = computeRiskDiff([HAND[0] as RoutedSample[], onlySafe, []], SHAPE);
  assert.deepEqual([...r.usable], [1, 0, 0]);
  assert.deepEqual(r.excludedBatches, [1, 2]);
  close(r.riskDiff.subarray(8), new Array(16).fill(0));
  close(r.aSafeN.subarray(8, 12), [1, 1, 0, 0]);
  const g = r.aggregate;
  assert.equal(g.nBatches, 1);
  close(g.riskDiff, [...r.riskDiff.subarray(0, 8)]);
  assert.deepEqual([...g.aSafe], [...r.aSafe.subarray(0, 8)]);
  close(g.std, new Array(8).fill(0));
  close(g.ciLow, new Array(8).fill(-1));
  close(g.ciHigh, new Array(8).fill(1));
  const sel = selectExperts(r, { batchThreshold: -2 });
  assert.equal(sel.perBatch[0]?.length, 8);
  assert.deepEqual(sel.perBatch.slice(1), [[], []]);
  assert.equal(randomExperts(r, { seed: 1, topK: 3 }).perBatch[1]?.length, 0);
});

test("bad input raises a UserError naming the place", () => {
  const bad = (samples: RoutedSample[], re: RegExp) =>
    assert.throws(
      () => computeRiskDiff([samples], SHAPE),
      (e: unknown) => e instanceof UserError && re.test(e.message),
    );
  bad([{ label: "safe", expertIds: tok([0, 1, 2]) }], /batch 0 sample 0: 3 expert ids/);
  bad([{ label: "safe", expertIds: tok([0, 1, 2, 4]) }], /expert id 4 .*4 experts/);
  assert.throws(() => computeRiskDiff([], { ...SHAPE, moeLayers: [3, 1] }), UserError);
  assert.throws(() => computeRiskDiff([], { ...SHAPE, moeLayers: [1, 4] }), UserError);
});

test("selection: thresholds, top-k, ties by (layer, expert), masks with dense rows zero", () => {
  const r = computeRiskDiff(HAND, SHAPE);
  const sel = selectExperts(r, { batchTopK: 2 });
  // batch 0: L1_E3 and L3_E1 tie at 1.0, the lower layer first; L3_E0 (1/6) is cut by top-2
  assert.deepEqual(
    sel.perBatch.map((s) => s.map((x) => x.label)),
    [
      ["L01_E03", "L03_E01"],
      ["L01_E03", "L01_E02"],
    ],
  );
  assert.deepEqual(sel.perBatch[0]?.[0], { layer: 1, expert: 3, label: "L01_E03", score: 1 });
  // batch 1 ties at 0.5: L01_E02, L03_E02, L03_E03 in (layer, expert) order
  const all = selectExperts(r, { batchTopK: 50 });
  assert.deepEqual(
    all.perBatch[1]?.map((x) => x.label),
    ["L01_E03", "L01_E02", "L03_E02", "L03_E03"],
  );
  assert.deepEqual(
    all.perBatch[0]?.map((x) => x.label),
    ["L01_E03", "L03_E01", "L03_E00"],
  );
  // risk_diff exactly 0 is not > 0
  assert.ok(!all.perBatch[1]?.some((x) => x.label === "L03_E01"));
  assert.deepEqual(
    sel.global.map((x) => x.label),
    ["L01_E03", "L03_E01", "L03_E02", "L01_E02"],
  );
  assert.deepEqual(
    selectExperts(r, { globalThreshold: 0.1, globalTopK: 2 }).global.map((x) => x.label),
    ["L01_E03", "L03_E01"],
  );
  assert.deepEqual(
    selectExperts(r, { globalThreshold: 0.5 }).global.map((x) => x.label),
    ["L01_E03"],
  );
  // union scored by mean risk_diff
  assert.deepEqual(
    sel.union.map((x) => [x.label, x.score]),
    [
      ["L01_E03", 1],
      ["L03_E01", 0.5],
      ["L01_E02", r.aggregate.riskDiff[2]],
    ],
  );
  assert.equal(ExpertSetSchema.parse(sel.union).length, 3);

  const maskOf = (cells: [number, number][]) => {
    const m = new Array(16).fill(0);
    for (const [l, e] of cells) m[l * 4 + e] = 1;
    return m;
  };
  assert.deepEqual(
    [...sel.globalMask],
    maskOf([
      [1, 3],
      [3, 1],
      [3, 2],
      [1, 2],
    ]),
  );
  assert.deepEqual(
    [...sel.unionMask],
    maskOf([
      [1, 3],
      [3, 1],
      [1, 2],
    ]),
  );
  assert.equal(sel.batchMasks.length, 2 * 16);
  assert.deepEqual(
    [...sel.batchMasks.subarray(0, 16)],
    maskOf([
      [1, 3],
      [3, 1],
    ]),
  );
  assert.deepEqual(
    [...sel.batchMasks.subarray(16)],
    maskOf([
      [1, 3],
      [1, 2],
    ]),
  );
});

test("labels pad to two digits and grow beyond", () => {
  assert.equal(expertLabel(3, 17), "L03_E17");
  assert.equal(expertLabel(0, 5), "L00_E05");
  assert.equal(expertLabel(12, 127), "L12_E127");
});

test("random ablation is deterministic per (seed + batch), distinct cells, and seed-sensitive", () => {
  const r = computeRiskDiff(
    [HAND[0] as RoutedSample[], HAND[1] as RoutedSample[], HAND[0] as RoutedSample[]],
    SHAPE,
  );
  const a = randomExperts(r, { seed: 42, topK: 3 });
  assert.deepEqual(randomExperts(r, { seed: 42, topK: 3 }), a);
  for (const set of a.perBatch) {
    assert.equal(set.length, 3);
    assert.equal(new Set(set.map((x) => x.label)).size, 3);
    assert.ok(set.every((x) => SHAPE.moeLayers.includes(x.layer) && x.expert < 4));
  }
  // batch b uses seed + b: seed 43's batch 0 is seed 42's batch 1
  const shifted = randomExperts(r, { seed: 43, topK: 3 });
  assert.deepEqual(
    shifted.perBatch[0]?.map((x) => x.label),
    a.perBatch[1]?.map((x) => x.label),
  );
  assert.equal(randomExperts(r, { seed: 1, topK: 100 }).perBatch[0]?.length, 8);
  const labels = (seed: number) =>
    randomExperts(r, { seed, topK: 3 }).perBatch.map((s) => s.map((x) => x.label));
  assert.notDeepEqual(labels(42), labels(1042));
  assert.equal(
    a.batchMasks.reduce((s, v) => s + v, 0),
    9,
  );
  // mulberry32 reference values (seed 1), and rough uniformity
  const rand = mulberry32(1);
  close([rand(), rand()], [0.6270739405881613, 0.002735721180215478], 0);
  const hist = new Array(8).fill(0);
  const many = randomExperts(computeRiskDiff(new Array(400).fill(HAND[0]), SHAPE), { seed: 7, topK: 1 });
  for (const s of many.perBatch) hist[((s[0]?.layer ?? 0) === 1 ? 0 : 4) + (s[0]?.expert ?? 0)]++;
  assert.ok(
    hist.every((h) => h > 25 && h < 80),
    `histogram ${hist}`,
  );
});

test("matches an independent numpy recomputation on random ids", () => {
  const shape: RoutingShape = { numLayers: 5, moeLayers: [0, 2, 3, 4], numExperts: 9, topK: 3 };
  const Lm = shape.moeLayers.length;
  const rand = mulberry32(2024);
  const batches: RoutedSample[][] = [];
  const allIds: number[] = [];
  const tokBatch: number[] = [];
  const tokUnsafe: number[] = [];
  for (let b = 0; b < 7; b++) {
    const samples: RoutedSample[] = [];
    const nSamples = 2 + Math.floor(rand() * 4);
    for (let s = 0; s < nSamples; s++) {
      // batch 3 has no unsafe samples; some samples are empty; ids sometimes repeat within a top-k
      const label = b === 3 || s % 2 === 0 ? "safe" : "unsafe";
      const tokens = Math.floor(rand() * 6);
      const ids = Array.from({ length: tokens * Lm * 3 }, () => Math.floor(rand() * 9));
      samples.push({ label, expertIds: s % 3 === 0 ? Uint16Array.from(ids) : Uint8Array.from(ids) });
      allIds.push(...ids);
      for (let t = 0; t < tokens; t++) {
        tokBatch.push(b);
        tokUnsafe.push(label === "unsafe" ? 1 : 0);
      }
    }
    batches.push(samples);
  }
  const r = computeRiskDiff(batches, shape);
  assert.ok(r.excludedBatches.includes(3));
  const n = r.aggregate.nBatches;
  assert.ok(n >= 3, `only ${n} usable batches`);

  const dir = mkdtempSync(join(tmpdir(), "riskdiff-"));
  try {
    writeNpy(join(dir, "ids.npy"), Uint8Array.from(allIds), [tokBatch.length, Lm, 3]);
    writeNpy(join(dir, "batch.npy"), Int32Array.from(tokBatch), [tokBatch.length]);
    writeNpy(join(dir, "unsafe.npy"), Uint8Array.from(tokUnsafe), [tokBatch.length]);
    const out = runPython(
      `
import json, sys
import numpy as np
d, B, E, t = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ids = np.load(d + "/ids.npy"); batch = np.load(d + "/batch.npy"); unsafe = np.load(d + "/unsafe.npy")
T, L, K = ids.shape
hit = np.zeros((T, L, E))
for j in range(K):
    np.put_along_axis(hit, ids[:, :, j:j + 1].astype(np.int64), 1.0, axis=2)
a = np.zeros((B, 2, L, E)); tok = np.zeros((B, 2))
for b in range(B):
    for y in range(2):
        sel = (batch == b) & (unsafe == y)
        a[b, y] = hit[sel].sum(axis=0); tok[b, y] = sel.sum()
ok = (tok > 0).all(axis=1)
rate = a[ok] / tok[ok][:, :, None, None]
rd = rate[:, 1] - rate[:, 0]
n = rd.shape[0]
mean = rd.mean(axis=0); std = rd.std(axis=0, ddof=1); half = t * std / np.sqrt(n)
print(json.dumps({
  "usable": ok.astype(int).tolist(), "a_safe": a[:, 0].ravel().tolist(), "a_unsafe": a[:, 1].ravel().tolist(),
  "a_sum_safe": a[ok, 0].sum(axis=0).ravel().tolist(),
  "d_sum_unsafe": (tok[ok, 1][:, None, None] - a[ok, 1]).sum(axis=0).ravel().tolist(),
  "rd": rd.ravel().tolist(), "safe_n": rate[:, 0].mean(axis=0).ravel().tolist(),
  "unsafe_n": rate[:, 1].mean(axis=0).ravel().tolist(), "mean": mean.ravel().tolist(),
  "std": std.ravel().tolist(), "lo": (mean - half).ravel().tolist(), "hi": (mean + half).ravel().tolist(),
  "pos": (rd > 0).mean(axis=0).ravel().tolist()}))
`,
      dir,
      String(batches.length),
      "9",
      String(tQuantile(0.975, n - 1)),
    );
    const np = JSON.parse(out) as Record<string, number[]>;
    const LE = Lm * 9;
    assert.deepEqual([...r.usable], np.usable);
    close(r.aSafe, np.a_safe as number[], 0, "a_safe");
    close(r.aUnsafe, np.a_unsafe as number[], 0, "a_unsafe");
    const usableRd = [...r.usable].flatMap((u, b) =>
      u ? [...r.riskDiff.subarray(b * LE, (b + 1) * LE)] : [],
    );
    close(usableRd, np.rd as number[], 1e-9, "risk_diff");
    const g = r.aggregate;
    close(g.aSafe, np.a_sum_safe as number[], 0, "sum a_safe");
    close(g.dUnsafe, np.d_sum_unsafe as number[], 0, "sum d_unsafe");
    close(g.aSafeN, np.safe_n as number[], 1e-9, "a_safe_n");
    close(g.aUnsafeN, np.unsafe_n as number[], 1e-9, "a_unsafe_n");
    close(g.riskDiff, np.mean as number[], 1e-9, "mean");
    close(g.std, np.std as number[], 1e-9, "std");
    close(g.ciLow, np.lo as number[], 1e-9, "ci_low");
    close(g.ciHigh, np.hi as number[], 1e-9, "ci_high");
    close(g.fracPositive, np.pos as number[], 1e-12, "frac_positive");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
