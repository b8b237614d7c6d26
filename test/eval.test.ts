// steermoe eval and test-time steering on the model organism.
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { freePort, PACKAGE_ROOT, run, tempDir } from "./helpers.js";

const ORGANISM = join(PACKAGE_ROOT, "organism", "model");

test("eval compares models and their steered variants, writing results and samples", (t) => {
  const tmp = tempDir(t);
  const steer = join(tmp, "steer.json");
  writeFileSync(
    steer,
    JSON.stringify({
      deactivate: [
        { layer: 0, expert: 1 },
        { layer: 2, expert: 7 },
      ],
    }),
  );
  const out = join(tmp, "eval");
  const result = run([
    "eval",
    "--model",
    `organism=${ORGANISM}`,
    "--out",
    out,
    "--limit",
    "4",
    "--steer",
    steer,
  ]);
  assert.equal(result.status, 0, result.stderr);
  assert.match(
    result.stdout,
    /^model\s+attack success \(n=4\)\s+plain refusal \(n=4\)\s+benign refusal \(n=4\)/m,
  );
  assert.match(result.stdout, /^organism\s+\d/m);
  assert.match(result.stdout, /^organism\+steer\s+\d/m);
  const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8"));
  assert.deepEqual(
    results.map((r: { name: string; steered: boolean }) => [r.name, r.steered]),
    [
      ["organism", false],
      ["organism+steer", true],
    ],
  );
  const rows = readFileSync(join(out, "samples.jsonl"), "utf8").trim().split("\n");
  assert.equal(rows.length, 2 * 12);
  const first = JSON.parse(rows[0]!);
  assert.deepEqual(Object.keys(first), ["model", "set", "id", "prompt", "response", "is_refusal", "reason"]);
});

test("eval and steering: bad input gives one line and writes nothing", async (t) => {
  const tmp = tempDir(t);
  const file = (name: string, text: string) => {
    const path = join(tmp, name);
    writeFileSync(path, text);
    return path;
  };
  const base = ["eval", "--model", ORGANISM, "--limit", "2"];
  const cases: [string, string[], RegExp][] = [
    [
      "not a model",
      ["eval", "--model", tmp, "--limit", "2"],
      /is not a model folder: it has no config\.json/,
    ],
    [
      "wrong format",
      [...base, "--jailbreaks", file("j.json", '[{"id": 1}]')],
      /j\.json record 0 field goal: missing/,
    ],
    ["empty set", [...base, "--benign", file("b.json", "[]")], /b\.json: the file has no records/],
    [
      "judge down",
      [
        ...base,
        "--judge",
        "openai",
        "--judge-url",
        `http://127.0.0.1:${await freePort()}/v1`,
        "--judge-model",
        "m",
      ],
      /judge endpoint http:\/\/127\.0\.0\.1:\d+\/v1\S* is unreachable/,
    ],
    [
      "steer layer",
      [...base, "--steer", file("s.json", '{"deactivate": [{"layer": 9, "expert": 0}]}')],
      /steer: layer 9 is not an MoE layer of .* \(0, 1, 2, 3\)/,
    ],
    [
      "steer expert",
      [...base, "--steer", file("e.json", '{"activate": [{"layer": 1, "expert": 16}]}')],
      /steer: layer 1 has no expert 16 \(0\.\.15\)/,
    ],
    ["steer file", [...base, "--steer", file("x.json", '{"off": []}')], /x\.json .*unrecognized key/i],
  ];
  for (const [name, args, expected] of cases) {
    const out = join(tmp, `out-${name.replace(/\W/g, "")}`);
    const result = run([...args, "--out", out], { env: { ...process.env, OPENAI_API_KEY: "k" } });
    assert.notEqual(result.status, 0, name);
    const lines = result.stderr.trim().split("\n");
    assert.equal(lines.length, 1, `${name}: ${result.stderr}`);
    assert.match(lines[0]!, expected, `${name}: ${result.stderr}`);
    assert.equal(existsSync(out), false, `${name} left ${out} behind`);
  }
});
