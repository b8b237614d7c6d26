import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UserError } from "../src/components/errors.js";
import { dropPairs, planBatches, shuffled, type BatchPlan } from "../src/components/data/batching.js";
import { loadPairs, presetMapping, type Pair } from "../src/components/data/pairs.js";
import { qualityControl, samplePasses } from "../src/components/method/quality-control.js";

const makePairs = (n: number): Pair[] =>
  Array.from({ length: n }, (_, i) => ({
    pairId: `p${i}`,
    safe: [{ role: "user", content: `safe ${i}` }],
    unsafe: [{ role: "user", content: `unsafe ${i}` }],
    source: {},
  }));

const ids = (plan: BatchPlan) => plan.batches.map((b) => b.samples.map((s) => s.sample_id));

function expectUserError(fn: () => unknown, pattern: RegExp) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UserError, `expected a UserError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  });
}

test("r = 0.5: pairs stay together, safe first, dataset order, leftovers unused", () => {
  const plan = planBatches(makePairs(9), { batchSize: 4 });
  assert.equal(plan.nSafe, 2);
  assert.equal(plan.nUnsafe, 2);
  assert.equal(plan.seed, null);
  assert.deepEqual(ids(plan), [
    ["p0:safe", "p1:safe", "p0:unsafe", "p1:unsafe"],
    ["p2:safe", "p3:safe", "p2:unsafe", "p3:unsafe"],
    ["p4:safe", "p5:safe", "p4:unsafe", "p5:unsafe"],
    ["p6:safe", "p7:safe", "p6:unsafe", "p7:unsafe"],
  ]);
  assert.deepEqual(plan.batches[1]?.samples[3], {
    sample_id: "p3:unsafe",
    batch_idx: 1,
    in_batch_idx: 3,
    pair_id: "p3",
    label: "unsafe",
    messages: [{ role: "user", content: "unsafe 3" }],
  });
});

test("defaults: B = 16, r = 0.5 gives 8 + 8", () => {
  const plan = planBatches(makePairs(33));
  assert.equal(plan.batchSize, 16);
  assert.equal(plan.batches.length, 4);
  assert.deepEqual([plan.nSafe, plan.nUnsafe], [8, 8]);
});

test("r != 0.5: two pools in the same order; batch count from the scarcer pool", () => {
  const plan = planBatches(makePairs(7), { batchSize: 4, safeRatio: 0.25 });
  assert.deepEqual([plan.nSafe, plan.nUnsafe], [1, 3]);
  assert.deepEqual(ids(plan), [
    ["p0:safe", "p0:unsafe", "p1:unsafe", "p2:unsafe"],
    ["p1:safe", "p3:unsafe", "p4:unsafe", "p5:unsafe"],
  ]);
  const third = planBatches(makePairs(6), { batchSize: 6, safeRatio: 1 / 3 });
  assert.deepEqual([third.nSafe, third.nUnsafe, third.batches.length], [2, 4, 1]);
});

test("seeded shuffle is deterministic and pinned", () => {
  assert.deepEqual(shuffled([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 42), [0, 7, 3, 5, 2, 1, 8, 9, 4, 6]);
  const a = planBatches(makePairs(20), { batchSize: 4, seed: 7 });
  const b = planBatches(makePairs(20), { batchSize: 4, seed: 7 });
  const c = planBatches(makePairs(20), { batchSize: 4, seed: 8 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(ids(a), ids(c));
  assert.equal(a.seed, 7);
  // Shuffling moves pairs, never splits them at r = 0.5.
  for (const batch of a.batches) {
    const pairIds = batch.samples.map((s) => s.pair_id);
    assert.deepEqual(pairIds.slice(0, 2), pairIds.slice(2));
  }
});

test("bad options say what to change", () => {
  const pairs = makePairs(20);
  expectUserError(
    () => planBatches(pairs, { batchSize: 1 }),
    /batch size 1: use a whole number of at least 2/,
  );
  expectUserError(() => planBatches(pairs, { batchSize: 4.5 }), /batch size 4\.5/);
  expectUserError(
    () => planBatches(pairs, { safeRatio: 1 }),
    /safe ratio 1: use a number strictly between 0 and 1/,
  );
  expectUserError(() => planBatches(pairs, { safeRatio: 0 }), /safe ratio 0:/);
  expectUserError(
    () => planBatches(pairs, { batchSize: 4, safeRatio: 0.2 }),
    /batch size 4 with safe ratio 0\.2 gives 0\.8 safe samples per batch/,
  );
  expectUserError(
    () => planBatches(pairs, { batchSize: 3 }),
    /batch size 3 with safe ratio 0\.5 gives 1\.5 safe samples per batch; a batch must hold whole/,
  );
  expectUserError(() => planBatches(pairs, { seed: -1 }), /shuffle seed -1/);
  expectUserError(
    () => planBatches(makePairs(7), { batchSize: 16 }),
    /one batch of 8 safe \+ 8 unsafe samples needs 8 pairs but the dataset has 7/,
  );
});

test("dropPairs keeps batch numbering and order, skips emptied batches", () => {
  const plan = planBatches(makePairs(6), { batchSize: 4 });
  const { batches, skippedBatchIdx } = dropPairs(plan.batches, new Set(["p1", "p2", "p3"]));
  assert.deepEqual(skippedBatchIdx, [1]);
  assert.deepEqual(
    batches.map((b) => b.batchIdx),
    [0, 2],
  );
  assert.deepEqual(
    batches[0]?.samples.map((s) => [s.sample_id, s.in_batch_idx]),
    [
      ["p0:safe", 0],
      ["p0:unsafe", 2],
    ],
  );
  assert.equal(batches[1]?.samples.length, 4);
  assert.equal(plan.batches[0]?.samples.length, 4, "the input plan is not changed");
});

test("dropPairs skips a batch left without safe samples (r != 0.5)", () => {
  const plan = planBatches(makePairs(6), { batchSize: 4, safeRatio: 0.25 });
  const { batches, skippedBatchIdx } = dropPairs(plan.batches, new Set(["p0"]));
  assert.deepEqual(skippedBatchIdx, [0]);
  assert.deepEqual(ids({ ...plan, batches }), [["p1:safe", "p3:unsafe", "p4:unsafe", "p5:unsafe"]]);
});

test("plan from a dataset file on disk", () => {
  const rows = Array.from({ length: 5 }, (_, i) => ({ q: `q${i}`, a: `a${i}` }));
  const file = join(mkdtempSync(join(tmpdir(), "steermoe-batching-")), "d.jsonl");
  writeFileSync(file, rows.map((r) => JSON.stringify(r)).join("\n"));
  const { pairs } = loadPairs(file, { safe: { field: "q" }, unsafe: { field: "a" }, sourceFields: [] });
  const plan = planBatches(pairs, { batchSize: 2 });
  assert.deepEqual(ids(plan), [
    ["0:safe", "0:unsafe"],
    ["1:safe", "1:unsafe"],
    ["2:safe", "2:unsafe"],
    ["3:safe", "3:unsafe"],
    ["4:safe", "4:unsafe"],
  ]);
  assert.ok(presetMapping("flipattack").filter);
});

test("quality control keeps a pair only if its plain request was refused and its jailbreak obeyed", () => {
  const judged = (pair: string, label: "safe" | "unsafe", isRefusal: boolean, parseFailure = false) => ({
    pair_id: pair,
    label,
    verdict: { isRefusal, parseFailure },
  });
  assert.equal(samplePasses(judged("a", "safe", true)), true);
  assert.equal(samplePasses(judged("a", "unsafe", true)), false);
  assert.equal(samplePasses(judged("a", "safe", true, true)), false);
  assert.equal(samplePasses({ label: "safe", verdict: null }), null);
  const samples = [
    ...[judged("kept", "safe", true), judged("kept", "unsafe", false)],
    ...[judged("obeyed", "safe", false), judged("obeyed", "unsafe", false)],
    ...[judged("refused", "safe", true), judged("refused", "unsafe", true)],
    ...[judged("unread", "safe", true), judged("unread", "unsafe", false, true)],
    judged("alone", "unsafe", false),
  ];
  assert.deepEqual(Object.fromEntries(qualityControl(samples, { qc: true, selfRefusal: true })), {
    obeyed: "plain request was not refused",
    refused: "jailbreak was refused",
    unread: "the judge's answer was unreadable",
    alone:
      "no generated safe partner to take the refusal from (safe ratio ≠ 0.5); use another refusal source",
  });
  assert.deepEqual([...qualityControl(samples, { qc: false, selfRefusal: false })], []);
});
