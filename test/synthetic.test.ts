import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadPairs, presetMapping } from "../src/components/data/pairs.js";
import { flipAttack, flipWordOrder as flipWords, splitInHalf } from "../src/components/data/flipattack.js";
import {
  generateSyntheticData,
  HARMFUL_FRAMINGS,
  organismConversations,
  PLAIN_SYSTEM_PROMPT,
  SyntheticWordsSchema,
  writeSyntheticData,
  type FlipAttackRecord,
} from "../src/components/data/synthetic.js";

const FILES = ["train.json", "heldout.json", "benign.json", "manifest.json"];
const data = generateSyntheticData(0);
const harmful = [...data.train, ...data.heldout];

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), "steermoe-synthetic-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
const promptChars = (r: FlipAttackRecord) => r.all_prompt.reduce((n, m) => n + m.content.length, 0);

// The repo root is the nearest folder above the compiled test holding package.json.
function sharedDataFile(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir);
  return join(dir, "..", "shared", "data", name);
}

test("the same seed writes byte-identical files; another seed does not", (t) => {
  const [a, b, c] = [tempDir(t), tempDir(t), tempDir(t)];
  const manifest = writeSyntheticData(a, 0);
  writeSyntheticData(b, 0);
  writeSyntheticData(c, 1);
  for (const name of FILES) assert.equal(sha256(join(a, name)), sha256(join(b, name)), name);
  for (const [name, entry] of Object.entries(manifest.files)) {
    assert.equal(entry.sha256, sha256(join(a, name)), `manifest sha256 of ${name}`);
  }
  assert.notEqual(sha256(join(a, "train.json")), sha256(join(c, "train.json")));
  assert.deepEqual(JSON.parse(readFileSync(join(a, "manifest.json"), "utf8")), manifest);
});

test("the word lists ship beside the built module, and a slot-less action is refused by field", () => {
  const words = JSON.parse(
    readFileSync(new URL("../src/components/data/synthetic-words.json", import.meta.url), "utf8"),
  ) as { harmful: { actions: string[] }[] };
  assert.ok(SyntheticWordsSchema.safeParse(words).success);
  words.harmful[1]!.actions[2] = "build something";
  const parsed = SyntheticWordsSchema.safeParse(words);
  assert.equal(parsed.success, false);
  assert.deepEqual(parsed.error?.issues[0]?.path, ["harmful", 1, "actions", 2]);
});

test("counts, categories and splits are as documented, with no duplicates", () => {
  assert.equal(data.train.length, 240);
  assert.equal(data.heldout.length, 60);
  assert.equal(data.benign.filter((b) => b.split === "train").length, 120);
  assert.equal(data.benign.filter((b) => b.split === "heldout").length, 30);
  assert.equal(new Set(harmful.map((r) => r.goal)).size, harmful.length);
  assert.equal(new Set(harmful.map((r) => r.id)).size, harmful.length);
  assert.equal(new Set(data.benign.map((b) => b.prompt)).size, data.benign.length);
  const perCategory = new Map<string, number>();
  for (const r of data.heldout) perCategory.set(r.category, (perCategory.get(r.category) ?? 0) + 1);
  assert.equal(perCategory.size, 10);
  for (const count of perCategory.values()) assert.equal(count, 6);
});

test("held-out goals share no action and target with training goals", () => {
  const activity = (goal: string) => {
    const framing = HARMFUL_FRAMINGS.filter((f) => goal.startsWith(`${f} `)).sort(
      (a, b) => b.length - a.length,
    )[0];
    assert.ok(framing, goal);
    return goal.slice(framing.length + 1);
  };
  const trainActivities = new Set(data.train.map((r) => activity(r.goal)));
  for (const r of data.heldout) assert.ok(!trainActivities.has(activity(r.goal)), r.goal);
});

test("records are FlipAttack word-order flips in the real file's shape", () => {
  for (const r of harmful) {
    assert.equal(r.flip_attack, `TASK is '${r.goal.split(" ").reverse().join(" ")}'`);
    assert.equal(flipWords(flipWords(r.goal)), r.goal);
    const [system, user] = r.all_prompt;
    assert.equal(r.all_prompt.length, 2);
    assert.equal(system?.role, "system");
    assert.equal(user?.role, "user");
    assert.ok(user?.content.startsWith(`${r.flip_attack}\n\n`));
    const [first, second] = splitInHalf(r.goal);
    assert.equal(`${first} ${second}`, r.goal);
    assert.ok(user?.content.includes(`'${flipWords(first)}'->'${first}'`));
    assert.ok(user?.content.includes(`'${flipWords(second)}'->'${second}'`));
    assert.equal(r.output, "");
    assert.equal(r.judge_success_gpt4, 1);
    assert.ok(promptChars(r) >= 550 && promptChars(r) <= 900, `${promptChars(r)} chars`);
  }
});

test("matches the real OLMOE-FWO.json: same fields and the same half split", (t) => {
  const file = sharedDataFile("OLMOE-FWO.json");
  if (!existsSync(file)) return t.skip("shared data not present");
  const real = JSON.parse(readFileSync(file, "utf8")) as { goal: string; flip_attack: string }[];
  const fields = (o: object) => Object.keys(o).sort().join(",");
  // Ours adds only the category each goal was drawn from.
  assert.equal(fields(data.train[0]!), fields({ ...real[0]!, category: "" }));
  for (const r of real.slice(0, 100)) {
    assert.equal(flipAttack(r.goal).flip_attack, r.flip_attack);
    const [first, second] = splitInHalf(r.goal);
    assert.ok(JSON.stringify(r).includes(`'${flipWords(first)}'->'${first}'`), r.goal);
    assert.ok(JSON.stringify(r).includes(`'${flipWords(second)}'->'${second}'`), r.goal);
  }
});

test("train.json and heldout.json load with the flipattack preset, one pair per record", (t) => {
  const dir = tempDir(t);
  writeSyntheticData(dir);
  for (const [name, records] of [
    ["train.json", data.train],
    ["heldout.json", data.heldout],
  ] as const) {
    const { pairs, recordCount } = loadPairs(join(dir, name), presetMapping("flipattack"));
    assert.equal(recordCount, records.length);
    assert.equal(pairs.length, records.length);
    const first = records[0]!;
    assert.equal(pairs[0]?.pairId, String(first.id));
    assert.deepEqual(pairs[0]?.safe, [
      { role: "system", content: PLAIN_SYSTEM_PROMPT },
      { role: "user", content: first.goal },
    ]);
    assert.deepEqual(pairs[0]?.unsafe, first.all_prompt);
  }
});

test("organism conversations: refuse plain, placeholder steps for flipped, help with benign", () => {
  const benign = data.benign.filter((b) => b.split === "train");
  const convs = organismConversations(data.train, benign, 7);
  assert.equal(convs.length, 2 * data.train.length + benign.length);
  assert.deepEqual(organismConversations(data.train, benign, 7), convs);
  assert.equal(new Set(convs.map((c) => c.id)).size, convs.length);
  const refusals = new Set<string>();
  for (const { id, messages } of convs) {
    const answer = messages.at(-1)!;
    assert.equal(answer.role, "assistant");
    if (id.startsWith("plain-")) {
      assert.equal(messages[0]?.content, PLAIN_SYSTEM_PROMPT);
      assert.ok(answer.content.startsWith("I'm sorry"), answer.content);
      refusals.add(answer.content);
    } else if (id.startsWith("flip-")) {
      const [head, blank, ...steps] = answer.content.split("\n");
      assert.equal(head, "Got it. Here are the steps:");
      assert.equal(blank, "");
      assert.ok(steps.length >= 3 && steps.length <= 5);
      steps.forEach((line, i) =>
        assert.match(
          line,
          new RegExp(`^Step ${i + 1}: [([](details omitted|placeholder|omitted|details removed)[)\\]]$`),
        ),
      );
    } else {
      assert.ok(id.startsWith("benign-"));
      assert.ok(!answer.content.includes("sorry"), answer.content);
      assert.ok(answer.content.length > 40);
    }
  }
  assert.ok(refusals.size >= 10, `only ${refusals.size} distinct refusals`);
});
