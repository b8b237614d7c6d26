// bin/steermoe end to end: real CLI process, real engine, real files.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Command } from "commander";
import { buildTiny, PACKAGE_ROOT, PYTHON, run, tempDir } from "./helpers.js";
import { program } from "../src/cli/index.js";
import { SettingOption, settingAt } from "../src/cli/flags.js";
import {
  RECIPE_SETTINGS,
  routingFormatJson,
  runFileJsonSchemas,
  settingsJsonSchemas,
} from "../src/cli/schemas.js";
import { commandReference } from "../src/cli/reference.js";
import { GenerateMeta } from "../src/components/io/run-files.js";
import { readJson } from "../src/components/io/store.js";

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
  assert.match(text.stdout, /deterministic\s+no/);
  const json = run(["inspect", "--model", olmoe, "--json", "--deterministic"]);
  const info = JSON.parse(json.stdout);
  assert.equal(info.deterministic, true);
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
      "--compute-batch",
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
    const meta = readJson(join(out, "meta.json"), GenerateMeta);
    assert.equal(meta.complete, true);
    assert.equal(meta.compute_batch_size, batch);
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
    [
      "bad top-p",
      ["--model", olmoe, "--input", CONVERSATIONS, "--top-p", "2"],
      /option '--top-p <p>' argument '2' is invalid\. expected a number <= 1/,
    ],
    [
      "bad --set value",
      ["--model", olmoe, "--input", CONVERSATIONS, "--set", "sampling.topP=2"],
      /generate settings field sampling\.topP: Too big/,
    ],
    [
      "unknown --set key",
      ["--model", olmoe, "--input", CONVERSATIONS, "--set", "sampling.topq=1"],
      /generate settings field sampling: Unrecognized key: "topq"/,
    ],
    [
      "bad --set",
      ["--model", olmoe, "--input", CONVERSATIONS, "--set", "=1"],
      /--set =1: expected key\.path=value/,
    ],
    [
      "--set into a value",
      ["--model", olmoe, "--input", CONVERSATIONS, "--set", "sampling.seed.x=1", "--set", "sampling=3"],
      /generate settings field sampling: /,
    ],
    [
      "the engine's batch is --compute-batch",
      ["--model", olmoe, "--input", CONVERSATIONS, "--batch-size", "2"],
      /unknown option '--batch-size'/,
    ],
    [
      "no model",
      ["--input", CONVERSATIONS],
      /generate needs --model \(or model\.source in the --config file\)/,
    ],
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

test("settings: --config file, then --set, then flags; what was used is in meta.json", (t) => {
  const tmp = tempDir(t);
  const config = join(tmp, "settings.yaml");
  writeFileSync(
    config,
    [
      `# yaml-language-server: $schema=${join(PACKAGE_ROOT, "schemas", "generate.schema.json")}`,
      `input: ${CONVERSATIONS}`,
      "sampling:",
      "  maxNewTokens: 3",
      "  seed: 7",
      "  temperature: 0.5",
    ].join("\n"),
  );
  const out = join(tmp, "gen");
  const result = run([
    "generate",
    "--model",
    olmoe,
    "--config",
    config,
    "--set",
    "sampling.maxNewTokens=5",
    "--set",
    "sampling.temperature=0",
    "--set",
    `out=${out}`,
    "--max-new-tokens",
    "4",
    "--compute-batch",
    "3",
  ]);
  assert.equal(result.status, 0, result.stderr);
  const meta = readJson(join(out, "meta.json"), GenerateMeta);
  assert.deepEqual(meta.config.sampling, { maxNewTokens: 4, temperature: 0, topP: 1, seed: 7 });
  assert.equal(meta.config.input, CONVERSATIONS);
  assert.equal(meta.config.computeBatch, 3);
  assert.equal(meta.compute_batch_size, 3);
  const lengths = readFileSync(join(out, "samples.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line).generated_token_ids.length);
  assert.ok(lengths.every((n) => n <= 4) && lengths.some((n) => n === 4), String(lengths));
});

const MINIMAL: Record<keyof typeof RECIPE_SETTINGS, object> = {
  analyze: { model: { source: "m" }, data: { file: "d" } },
  train: { run: "r" },
  eval: { models: [{ name: "a", model: { source: "m" } }] },
  generate: { model: { source: "m" }, input: "i", out: "o" },
  inspect: { model: { source: "m" } },
  "apply-delta": { model: { source: "m" }, delta: "d", out: "o" },
  jailbreak: { goals: "g" },
  serve: { model: { source: "m" } },
};
const commands = () => new Map(program().commands.map((c) => [c.name(), c] as [string, Command]));

test("every setting flag shows, as its default, the value the recipe gets without it", () => {
  for (const [name, schema] of Object.entries(RECIPE_SETTINGS)) {
    const parsed = schema.parse(MINIMAL[name as keyof typeof RECIPE_SETTINGS]) as Record<string, unknown>;
    const flags = commands()
      .get(name)!
      .options.filter((o): o is SettingOption => o instanceof SettingOption);
    assert.ok(flags.length > 0, name);
    const at = (root: unknown, path: string) =>
      path
        .replace("models[]", "models.0")
        .split(".")
        .reduce((node, key) => (node as Record<string, unknown> | undefined)?.[key], root);
    for (const option of flags) {
      // Required settings, given in the minimal input, have no default.
      if (at(MINIMAL[name as keyof typeof RECIPE_SETTINGS], option.path) !== undefined) continue;
      const value = at(parsed, option.path);
      // A plain flag turns its setting on (--no-x off); any other shows the schema's default.
      const takesValue = option.required || option.optional;
      const expected = takesValue ? option.defaultValue : option.negate;
      assert.deepEqual(value, expected, `${name} ${option.long}`);
    }
  }
  assert.equal(settingAt(RECIPE_SETTINGS.analyze, "judge.kind").default, "keyword");
});

test("flags mean one thing everywhere: model flags on every command that loads one, --compute-batch and the engines on every one that generates", () => {
  const all = commands();
  const has = (command: string, flag: string) => all.get(command)!.options.some((o) => o.long === flag);
  for (const command of ["inspect", "generate", "analyze", "train", "apply-delta", "eval", "serve"]) {
    for (const flag of ["--dtype", "--device", "--device-map", "--trust-remote-code", "--config", "--set"]) {
      assert.ok(has(command, flag), `${command} ${flag}`);
    }
  }
  for (const command of ["generate", "analyze", "eval", "serve"])
    assert.ok(has(command, "--compute-batch"), command);
  for (const command of ["generate", "analyze", "eval"]) {
    for (const flag of ["--workers", "--devices"]) assert.ok(has(command, flag), command);
  }
  const batchSize = [...all.keys()].filter((command) => has(command, "--batch-size"));
  assert.deepEqual(batchSize.sort(), ["analyze", "train"]);
});

test("the shipped JSON Schemas are the ones the settings generate (npm run schemas)", () => {
  for (const [file, text] of Object.entries(settingsJsonSchemas())) {
    const path = join(PACKAGE_ROOT, "schemas", file);
    assert.ok(existsSync(path), `${path} is missing: run npm run schemas`);
    assert.equal(readFileSync(path, "utf8"), text, `${file} is stale: run npm run schemas`);
  }
  const analyze = JSON.parse(settingsJsonSchemas()["analyze.schema.json"]!);
  assert.equal(analyze.properties.batch.properties.size.default, 16);
  assert.deepEqual(analyze.properties.tokens.enum, ["generation", "prompt", "all"]);
  assert.equal(analyze.additionalProperties, false);
});

test("the Python package's run-file schemas and the engine's shard format are the ones TypeScript generates (npm run schemas)", () => {
  const files = runFileJsonSchemas();
  assert.deepEqual(Object.keys(files).sort(), [
    "eval_results.schema.json",
    "experts.schema.json",
    "samples.schema.json",
    "train_log.schema.json",
  ]);
  for (const [file, text] of Object.entries(files)) {
    const path = join(PACKAGE_ROOT, "engine", "steermoe", "schemas", file);
    assert.ok(existsSync(path), `${path} is missing: run npm run schemas`);
    assert.equal(readFileSync(path, "utf8"), text, `${file} is stale: run npm run schemas`);
  }
  assert.deepEqual(JSON.parse(files["samples.schema.json"]!).properties.label.enum, ["safe", "unsafe"]);
  // The engine writes routing shards by the format the reader defines.
  const [[name, format]] = Object.entries(routingFormatJson()) as [[string, string]];
  const path = join(PACKAGE_ROOT, "engine", "steermoe_engine", name);
  assert.equal(readFileSync(path, "utf8"), format, `${name} is stale: run npm run schemas`);
  assert.equal(JSON.parse(format).format, "steermoe.routing.v1");
});

test("docs/commands.md is every command's --help as the CLI writes it (npm run schemas)", () => {
  const written = readFileSync(join(PACKAGE_ROOT, "docs", "commands.md"), "utf8");
  assert.equal(written, commandReference(), "docs/commands.md is stale: run npm run schemas");
  for (const command of program().commands)
    assert.ok(written.includes(`## ${command.name()}\n`), command.name());
  assert.match(written, /--judge-tokenizer <source>/);
});
