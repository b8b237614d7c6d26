// bin/steermoe end to end: real CLI process, real engine, real files.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { buildTiny, PACKAGE_ROOT, PYTHON, run, tempDir } from "./helpers.js";

// Removed once every test of this file has run.
const dir = tempDir({ after });
let olmoe: string;
before(async () => {
  olmoe = await buildTiny(dir);
});

const CONVERSATIONS = join(PACKAGE_ROOT, "examples", "conversations.jsonl");

function checkRouting(model: string, out: string) {
  const check = spawnSync(PYTHON, [join(PACKAGE_ROOT, "test", "fixtures", "check_routing.py"), model, out], {
    encoding: "utf8",
  });
  assert.equal(check.status, 0, check.stderr);
  return JSON.parse(check.stdout) as {
    samples: number;
    prompt_tokens: number;
    generated_tokens: number;
    mismatched_tokens: number;
  };
}

test("inspect prints the layout, and JSON on request", () => {
  const text = run(["inspect", "--model", olmoe]);
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /architecture\s+OLMoE/);
  assert.match(text.stdout, /experts per layer\s+8/);
  assert.match(text.stdout, /chat template\s+yes/);
  const json = run(["inspect", "--model", olmoe, "--json"]);
  const info = JSON.parse(json.stdout);
  assert.equal(info.top_k, 2);
  assert.equal(info.parameters.experts, 2 * 8 * info.parameters.one_expert);
  assert.match(info.engine.torch, /^2\.13/);
});

for (const batch of [1, 8]) {
  test(`generate records the experts every token used (compute batch ${batch})`, (t) => {
    const out = join(tempDir(t), "gen");
    const result = run([
      "generate",
      "--model",
      olmoe,
      "--input",
      CONVERSATIONS,
      "--out",
      out,
      "--batch-size",
      String(batch),
      "--max-new-tokens",
      "24",
    ]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /done: 8\/8 samples/);
    const counts = checkRouting(olmoe, out);
    assert.equal(counts.samples, 8);
    assert.equal(counts.generated_tokens, 8 * 24);
    assert.ok(counts.prompt_tokens > 8 * 10);
    assert.equal(counts.mismatched_tokens, 0);
    const meta = JSON.parse(readFileSync(join(out, "meta.json"), "utf8"));
    assert.equal(meta.complete, true);
    assert.equal(meta.computeBatchSize, batch);
  });
}

test("generate --replay records the routing of given responses", (t) => {
  const tmp = tempDir(t);
  const input = join(tmp, "replay.jsonl");
  const lines = readFileSync(CONVERSATIONS, "utf8").trim().split("\n");
  writeFileSync(
    input,
    lines
      .map((line) => {
        const c = JSON.parse(line);
        c.messages.push({ role: "assistant", content: "I'm sorry, but I cannot help with that." });
        return JSON.stringify(c);
      })
      .join("\n"),
  );
  const out = join(tmp, "replayed");
  const result = run(["generate", "--model", olmoe, "--input", input, "--out", out, "--replay"]);
  assert.equal(result.status, 0, result.stderr);
  const counts = checkRouting(olmoe, out);
  assert.equal(counts.samples, 8);
  assert.equal(counts.mismatched_tokens, 0);
  const first = JSON.parse(readFileSync(join(out, "samples.jsonl"), "utf8").split("\n")[0]!);
  assert.equal(first.finish_reason, "replay");
  assert.equal(first.text, "I'm sorry, but I cannot help with that.");
});

test("tiny-model builds a model folder that inspect reads", (t) => {
  const out = join(tempDir(t), "mixtral");
  const built = run(["tiny-model", "--arch", "mixtral", "--out", out, "--experts", "4", "--top-k", "1"]);
  assert.equal(built.status, 0, built.stderr);
  const info = JSON.parse(run(["inspect", "--model", out, "--json"]).stdout);
  assert.equal(info.model_type, "mixtral");
  assert.equal(info.num_experts, 4);
  assert.equal(info.top_k, 1);
});

test("bad input: one line naming what to fix, non-zero exit, no output written", async (t) => {
  const tmp = tempDir(t);
  const dense = await buildTiny(tmp, "llama");
  const file = (name: string, text: string) => {
    const path = join(tmp, name);
    writeFileSync(path, text);
    return path;
  };
  const ok = '{"messages": [{"role": "user", "content": "hi"}]}\n';
  const cases: [string, string[], RegExp][] = [
    [
      "missing model",
      ["--model", join(tmp, "nope"), "--input", CONVERSATIONS],
      /model folder .*nope does not exist/,
    ],
    [
      "not a model",
      ["--model", tmp, "--input", CONVERSATIONS],
      /is not a model folder: it has no config\.json/,
    ],
    ["dense model", ["--model", dense, "--input", CONVERSATIONS], /'llama' is a dense model/],
    [
      "malformed line",
      ["--model", olmoe, "--input", file("a.jsonl", ok + "{oops\n")],
      /a\.jsonl line 2: not valid JSON/,
    ],
    [
      "unknown role",
      ["--model", olmoe, "--input", file("b.jsonl", '{"messages": [{"role": "tool", "content": "x"}]}')],
      /b\.jsonl record 0 \(line 1\) field messages\.0\.role: /,
    ],
    [
      "non-string content",
      ["--model", olmoe, "--input", file("c.jsonl", ok + '{"messages": [{"role": "user", "content": 3}]}')],
      /c\.jsonl record 1 \(line 2\) field messages\.0\.content: /,
    ],
    [
      "empty conversation",
      ["--model", olmoe, "--input", file("d.jsonl", '{"messages": []}')],
      /d\.jsonl record 0 \(line 1\) field messages: /,
    ],
    ["empty file", ["--model", olmoe, "--input", file("e.jsonl", "\n")], /e\.jsonl: the file has no records/],
    ["missing input", ["--model", olmoe, "--input", join(tmp, "none.jsonl")], /none\.jsonl: no such file/],
    [
      "unknown flag",
      ["--model", olmoe, "--input", CONVERSATIONS, "--temprature", "1"],
      /unknown option '--temprature'/,
    ],
    [
      "bad number",
      ["--model", olmoe, "--input", CONVERSATIONS, "--top-p", "x"],
      /--top-p.*expected a number/,
    ],
    ["bad top-p", ["--model", olmoe, "--input", CONVERSATIONS, "--top-p", "2"], /field sampling\.topP: /],
  ];
  for (const [name, args, expected] of cases) {
    const out = join(tmp, `out-${name.replaceAll(" ", "-")}`);
    const result = run(["generate", ...args, "--out", out]);
    assert.notEqual(result.status, 0, name);
    const lines = result.stderr.trim().split("\n");
    assert.match(lines[0]!, /^steermoe: /, name);
    assert.match(lines[0]!, expected, `${name}: ${result.stderr}`);
    assert.doesNotMatch(result.stderr, /^\s+at |Traceback/m, name);
    assert.equal(existsSync(out), false, `${name} left ${out} behind`);
  }
});

test("an existing output folder is kept unless --overwrite", (t) => {
  const out = join(tempDir(t), "gen");
  const args = [
    "generate",
    "--model",
    olmoe,
    "--input",
    CONVERSATIONS,
    "--out",
    out,
    "--max-new-tokens",
    "2",
  ];
  assert.equal(run(args).status, 0);
  const again = run(args);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /already exists and is not empty; choose another --out or pass --overwrite/);
  assert.equal(run([...args, "--overwrite"]).status, 0);
});
