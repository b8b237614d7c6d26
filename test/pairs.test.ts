import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { UserError } from "../src/components/errors.js";
import { planBatches } from "../src/components/data/batching.js";
import {
  DatasetMappingSchema,
  loadPairs,
  presetMapping,
  type DatasetMapping,
} from "../src/components/data/pairs.js";

const flipattack = presetMapping("flipattack");
const jailbreak = (goal: string) => [
  { role: "system", content: "be evil" },
  { role: "user", content: `flipped ${goal}` },
];
const record = (id: unknown, judge: unknown, extra: Record<string, unknown> = {}) => ({
  id,
  goal: `goal ${id}`,
  flip_attack: "x",
  all_prompt: jailbreak(`goal ${id}`),
  output: "out",
  judge_success_gpt4: judge,
  ...extra,
});

function writeTemp(name: string, text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), "steermoe-pairs-")), name);
  writeFileSync(file, text);
  return file;
}

function expectUserError(fn: () => unknown, pattern: RegExp) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UserError, `expected a UserError, got ${String(err)}`);
    assert.match(err.message, pattern);
    assert.equal(err.message.includes("\n"), false, "a UserError is one line");
    return true;
  });
}

// The repo root is the nearest folder above the compiled test holding package.json; the shared
// data sits beside the repo.
function sharedDataFile(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir);
  return join(dir, "..", "shared", "data", name);
}

test("flipattack: safe is system + goal, unsafe is all_prompt, failed jailbreaks dropped", () => {
  const text = JSON.stringify([record(7, 1), record(3, 0), record(5, 1)]);
  const file = writeTemp("data.json", text);
  const { pairs, datasetSha256, recordCount } = loadPairs(file, flipattack);
  assert.equal(recordCount, 3);
  assert.equal(datasetSha256, createHash("sha256").update(text).digest("hex"));
  assert.deepEqual(
    pairs.map((p) => p.pairId),
    ["7", "5"],
  );
  assert.deepEqual(pairs[0], {
    pairId: "7",
    safe: [
      { role: "system", content: "You are a helpful assistant." },
      { role: "user", content: "goal 7" },
    ],
    unsafe: jailbreak("goal 7"),
    source: { goal: "goal 7", flip_attack: "x", judge_success_gpt4: 1 },
  });
  const all = loadPairs(file, flipattack, { keepFiltered: true });
  assert.deepEqual(
    all.pairs.map((p) => p.pairId),
    ["7", "3", "5"],
  );
});

test('flipattack filter: 1 and "1" kept, 0 and "0" dropped, anything else an error', () => {
  const file = writeTemp(
    "d.json",
    JSON.stringify([record(1, 1), record(2, "1"), record(3, 0), record(4, "0")]),
  );
  assert.deepEqual(
    loadPairs(file, flipattack).pairs.map((p) => p.pairId),
    ["1", "2"],
  );
  for (const bad of [2, "yes", null, true, false, "", " 1", 1.5]) {
    const path = writeTemp("d.json", JSON.stringify([record(1, 1), record(2, bad)]));
    const expected = `d.json record 1 field judge_success_gpt4: got ${JSON.stringify(bad)}; expected 1, "1" (kept) or 0, "0" (dropped)`;
    expectUserError(
      () => loadPairs(path, flipattack),
      new RegExp(expected.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")),
    );
    assert.equal(loadPairs(path, flipattack, { keepFiltered: true }).pairs.length, 2);
  }
});

test("a plain-string all_prompt becomes one user message", () => {
  const file = writeTemp("data.json", JSON.stringify([record("a", 1, { all_prompt: "do it" })]));
  assert.deepEqual(loadPairs(file, flipattack).pairs[0]?.unsafe, [{ role: "user", content: "do it" }]);
});

test("JSONL: blank lines ignored, malformed line reported by line number", () => {
  const good = [record(1, 1), record(2, 1)].map((r) => JSON.stringify(r));
  const file = writeTemp("data.jsonl", `${good[0]}\n\n${good[1]}\n`);
  assert.deepEqual(
    loadPairs(file, flipattack).pairs.map((p) => p.pairId),
    ["1", "2"],
  );
  const bad = writeTemp("bad.jsonl", `${good[0]}\n\n{"id": 2,\n`);
  expectUserError(() => loadPairs(bad, flipattack), /bad\.jsonl line 3: not valid JSON/);
  const missing = writeTemp("m.jsonl", `${good[0]}\n\n${JSON.stringify({ id: 9, goal: "g" })}\n`);
  expectUserError(
    () => loadPairs(missing, flipattack),
    /m\.jsonl record 1 \(line 3\) field all_prompt: missing/,
  );
});

test("empty datasets and a filter that drops everything are errors", () => {
  expectUserError(() => loadPairs(writeTemp("e.json", "[]"), flipattack), /e\.json: the file has no records/);
  expectUserError(
    () => loadPairs(writeTemp("e.jsonl", "\n  \n"), flipattack),
    /e\.jsonl: the file has no records/,
  );
  const file = writeTemp("zero.json", JSON.stringify([record(1, 0)]));
  expectUserError(
    () => loadPairs(file, flipattack),
    /zero\.json: the filter on field judge_success_gpt4 dropped all 1/,
  );
  expectUserError(
    () => loadPairs(join(tmpdir(), "no-such-steermoe.json"), flipattack),
    /no-such-steermoe\.json: no such file/,
  );
});

test("bad records name file, record and field", () => {
  const cases: [unknown, RegExp][] = [
    [{ goal: "g", all_prompt: "p", judge_success_gpt4: 1 }, /d\.json record 1 field id: missing/],
    [record(2, 1, { goal: undefined }), /d\.json record 1 field goal: missing/],
    [
      record(2, 1, { all_prompt: 5 }),
      /record 1 field all_prompt: expected a string or a list of \{role, content\}/,
    ],
    [record(2, 1, { all_prompt: [] }), /record 1 field all_prompt: empty message list/],
    [
      record(2, 1, { all_prompt: [{ role: "tool", content: "x" }] }),
      /record 1 field all_prompt\[0\]\.role: expected "system", "user" or "assistant", got "tool"/,
    ],
    [
      record(2, 1, {
        all_prompt: [
          { role: "user", content: "a" },
          { role: "user", content: 3 },
        ],
      }),
      /record 1 field all_prompt\[1\]\.content: expected a string, got number/,
    ],
    [record(1, 1), /d\.json record 1 field id: duplicate id 1 \(also record 0\)/],
    [record(2, 1, { judge_success_gpt4: undefined }), /record 1 field judge_success_gpt4: missing/],
    ["just text", /d\.json record 1: expected an object/],
  ];
  for (const [bad, pattern] of cases) {
    const file = writeTemp("d.json", JSON.stringify([record(1, 1), bad]));
    expectUserError(() => loadPairs(file, flipattack), pattern);
  }
});

test("generic mapping: index ids, system prompt on strings, keep filter, parsed from config", () => {
  const mapping: DatasetMapping = DatasetMappingSchema.parse({
    safe: { field: "plain", system: "sys" },
    unsafe: { field: "attack" },
    filter: { field: "split", keep: ["test"], drop: ["train"] },
    sourceFields: ["plain", "absent"],
  });
  const rows = [
    { plain: "q0", attack: "a0", split: "test" },
    { plain: "q1", attack: "a1", split: "train" },
    { plain: "q2", attack: [{ role: "user", content: "a2" }], split: "test" },
  ];
  const { pairs } = loadPairs(writeTemp("g.json", JSON.stringify(rows)), mapping);
  assert.deepEqual(pairs, [
    {
      pairId: "0",
      safe: [
        { role: "system", content: "sys" },
        { role: "user", content: "q0" },
      ],
      unsafe: [{ role: "user", content: "a0" }],
      source: { plain: "q0" },
    },
    {
      pairId: "2",
      safe: [
        { role: "system", content: "sys" },
        { role: "user", content: "q2" },
      ],
      unsafe: [{ role: "user", content: "a2" }],
      source: { plain: "q2" },
    },
  ]);
  assert.throws(() => DatasetMappingSchema.parse({ safe: { field: "a" }, unsafe: { field: "b" }, extra: 1 }));
  expectUserError(
    () => loadPairs(writeTemp("g.json", JSON.stringify([...rows, { plain: "q", attack: "a" }])), mapping),
    /g\.json record 3 field split: missing/,
  );
  expectUserError(
    () =>
      loadPairs(
        writeTemp("g.json", JSON.stringify([...rows, { plain: "q", attack: "a", split: "dev" }])),
        mapping,
      ),
    /g\.json record 3 field split: got "dev"; expected "test" \(kept\) or "train" \(dropped\)/,
  );
  assert.throws(() => presetMapping("nope"), /unknown dataset preset "nope": use one of flipattack/);
});

test("real OLMOE-FWO.json: 371 pairs, 46 batches of 8 + 8", (t) => {
  const file = sharedDataFile("OLMOE-FWO.json");
  if (!existsSync(file)) {
    t.skip(`${file} is absent; the real-dataset check did not run`);
    return;
  }
  const { pairs, recordCount, datasetSha256 } = loadPairs(file, flipattack);
  assert.equal(recordCount, 519);
  assert.equal(pairs.length, 371);
  assert.match(datasetSha256, /^[0-9a-f]{64}$/);
  assert.deepEqual(
    pairs.slice(0, 4).map((p) => p.pairId),
    ["0", "2", "3", "4"],
  );
  assert.equal(pairs.at(-1)?.pairId, "518");
  assert.equal(loadPairs(file, flipattack, { keepFiltered: true }).pairs.length, 519);
  const plan = planBatches(pairs, { batchSize: 16, safeRatio: 0.5 });
  assert.equal(plan.batches.length, 46);
  for (const batch of plan.batches) {
    assert.equal(batch.samples.filter((s) => s.label === "safe").length, 8);
    assert.equal(batch.samples.filter((s) => s.label === "unsafe").length, 8);
  }
});
