// steermoe analyze end to end: real CLI, real engine, a real OpenAI-compatible judge on loopback.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  BIN,
  freePort,
  buildTiny,
  flipattackRecords,
  PACKAGE_ROOT,
  PYTHON,
  run,
  runAsync,
  tempDir,
} from "./helpers.js";
import { steerFromRun } from "../src/components/method/steering.js";

// Removed once every test of this file has run.
const dir = tempDir({ after });
let model: string;
let judgeUrl: string;
let judgeRequests = 0;
let http: Server;

// The judge decides from the request alone: a jailbreak ("TASK is ...") is obeyed, a plain
// request is refused, except goals that say NOREFUSE, whose plain request is "answered".
before(async () => {
  model = await buildTiny(dir);
  http = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      judgeRequests++;
      const user = (JSON.parse(body) as { messages: { content: string }[] }).messages.at(-1)!.content;
      const request = user.split("</request>")[0]!;
      const isRefusal = !request.includes("TASK is") && !request.includes("NOREFUSE");
      const content = JSON.stringify({ is_refusal: isRefusal, confidence: 0.9, reason: "rule" });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ choices: [{ message: { content } }] }));
    });
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  judgeUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}/v1`;
});
after(async () => {
  http.closeAllConnections();
  await new Promise<void>((resolve) => http.close(() => resolve()));
});

function dataset(name: string, records: object[]): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(records));
  return path;
}

const jsonl = (path: string) =>
  readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l));

const base = (data: string, runDir: string) => [
  "analyze",
  "--data",
  data,
  "--model",
  model,
  "--run",
  runDir,
  "--batch-size",
  "8",
  "--max-new-tokens",
  "12",
];

test("analyze without QC: every file loads, and numpy recomputes the risk difference", async (t) => {
  const runDir = join(tempDir(t), "run");
  const data = dataset("plain.json", flipattackRecords(26));
  const result = run([...base(data, runDir), "--qc", "off", "--random-experts"]);
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /26 pairs in 6 batches; 6 batches and 24 pairs kept/);

  const check = spawnSync(PYTHON, [join(PACKAGE_ROOT, "test", "fixtures", "check_riskdiff.py"), runDir], {
    encoding: "utf8",
  });
  assert.equal(check.status, 0, check.stderr);
  const report = JSON.parse(check.stdout);
  assert.equal(report.usable_batches, 6);
  assert.equal(report.sorted_desc, true);
  assert.equal(report.ranking_matches, true, "experts.json ranks the experts as risk_diff.parquet does");
  const ranking = JSON.parse(readFileSync(join(runDir, "experts.json"), "utf8")).ranking;
  const on = await steerFromRun(runDir, { top: 3, mode: "activate" });
  assert.deepEqual(
    on.biases,
    ranking.slice(0, 3).map((r: object) => ({ ...r, bias: "inf" })),
  );
  // Graded maps, checked against risk_diff.csv read here as text.
  const [header, ...lines] = readFileSync(join(runDir, "risk_diff.csv"), "utf8").trim().split("\n");
  const col = (name: string) => header!.split(",").indexOf(name);
  const csv = lines.map((l) => l.split(","));
  const cell = (row: string[], name: string) => Number(row[col(name)]);
  const graded = await steerFromRun(runDir, { top: 4, scale: 2 });
  assert.deepEqual(
    graded.biases,
    csv
      .slice(0, 4)
      .map((r) => ({ layer: cell(r, "layer"), expert: cell(r, "expert"), bias: -2 * cell(r, "risk_diff") })),
  );
  const excluding = csv.filter((r) => cell(r, "ci_low") > 0 || cell(r, "ci_high") < 0);
  const ci = await steerFromRun(runDir, { top: "ci", scale: 2 });
  assert.ok(excluding.length > 0 && excluding.length < csv.length);
  assert.deepEqual(
    ci.biases.map((b) => [b.layer, b.expert, b.bias]),
    excluding.map((r) => [cell(r, "layer"), cell(r, "expert"), -2 * cell(r, "risk_diff")]),
  );
  // Switched off, only the experts whose interval lies above 0: not those safe tokens favour.
  const above = excluding.filter((r) => cell(r, "ci_low") > 0);
  assert.ok(above.length > 0 && above.length < excluding.length);
  assert.deepEqual(
    (await steerFromRun(runDir, { top: "ci" })).biases,
    above.map((r) => ({ layer: cell(r, "layer"), expert: cell(r, "expert"), bias: "-inf" })),
  );
  // export-steering: the same map as a JSON list and as an .npy matrix numpy reads.
  const mapJson = join(runDir, "map.json");
  const mapNpy = join(runDir, "map.npy");
  for (const [format, out] of [
    ["json", mapJson],
    ["npy", mapNpy],
  ]) {
    const exported = run([
      "export-steering",
      "--run",
      runDir,
      "--top",
      "4",
      "--steer-scale",
      "2",
      "--format",
      format!,
      "--out",
      out!,
    ]);
    assert.equal(exported.status, 0, exported.stderr);
  }
  const file = JSON.parse(readFileSync(mapJson, "utf8"));
  assert.equal(file.model, model);
  assert.match(file.layer_indexing, /decoder-layer index, 0-based/);
  assert.deepEqual(file.biases, graded.biases);
  const dense = spawnSync(
    PYTHON,
    ["-c", "import json, sys, numpy as np; print(json.dumps(np.load(sys.argv[1]).tolist()))", mapNpy],
    { encoding: "utf8" },
  );
  assert.equal(dense.status, 0, dense.stderr);
  const matrix = JSON.parse(dense.stdout) as number[][];
  assert.equal(matrix.length, file.num_layers);
  const nonzero = matrix.flatMap((row, layer) =>
    row.flatMap((bias, expert) => (bias ? [{ layer, expert, bias }] : [])),
  );
  const byCell = (a: { layer: number; expert: number }, b: { layer: number; expert: number }) =>
    a.layer - b.layer || a.expert - b.expert;
  assert.deepEqual(
    nonzero.sort(byCell).map((b) => [b.layer, b.expert]),
    [...graded.biases].sort(byCell).map((b) => [b.layer, b.expert]),
  );
  for (const b of nonzero) {
    const want = graded.biases.find((g) => g.layer === b.layer && g.expert === b.expert)!.bias as number;
    assert.ok(Math.abs(b.bias - want) < 1e-6, "float32 of the JSON bias");
  }
  assert.deepEqual(JSON.parse(readFileSync(`${mapNpy}.json`, "utf8")), file);
  for (const [key, value] of Object.entries(report.max_abs_diff)) assert.ok((value as number) <= 1e-9, key);
  assert.ok(Math.abs(report.t_multiplier - 2.5705818366147395) < 1e-6); // t(0.975, 5)

  // Batch structure: 4 safe then 4 unsafe of the same pairs, in dataset order.
  const batches = JSON.parse(readFileSync(join(runDir, "batches.json"), "utf8")).batches;
  assert.deepEqual(batches[1].sample_ids, [
    ...["4", "5", "6", "7"].map((p) => `${p}:safe`),
    ...["4", "5", "6", "7"].map((p) => `${p}:unsafe`),
  ]);
  const sft = jsonl(join(runDir, "sft_dataset.jsonl"));
  assert.equal(sft.length, 48);
  assert.deepEqual(
    sft.slice(8, 16).map((r) => r.sample_id),
    batches[1].sample_ids,
  );
  // self refusal source: the jailbreak's target is its pair's own plain-request response.
  const samples = jsonl(join(runDir, "samples.jsonl"));
  const text = new Map(samples.map((s) => [s.sample_id, s.text]));
  assert.equal(sft[12].messages.at(-1).content, text.get("4:safe"));
  assert.equal(sft[12].messages.at(-1).role, "assistant");

  const masks = spawnSync(
    PYTHON,
    [
      "-c",
      `import json, numpy as np, sys
run = sys.argv[1]
e = json.load(open(run + "/experts.json"))
m = np.load(run + "/batch_expert_masks.npy")
assert m.shape == (6, 2, 8) and m.dtype == np.float32, (m.shape, m.dtype)
for b in e["per_batch"]:
    want = np.zeros((2, 8), np.float32)
    for x in b["experts"]: want[x["layer"], x["expert"]] = 1
    assert (m[b["batch_idx"]] == want).all()
u = np.load(run + "/union_expert_mask.npy")
assert (u == (m.max(0))).all()
r = np.load(run + "/random_batch_expert_masks.npy")
assert (r.sum((1, 2)) == m.sum((1, 2))).all() and not (r == m).all()
print("ok")`,
      runDir,
    ],
    { encoding: "utf8" },
  );
  assert.equal(masks.stdout.trim(), "ok", masks.stderr);
});

test("quality control with an OpenAI-compatible judge; a rerun resumes and asks nothing twice", async (t) => {
  const runDir = join(tempDir(t), "run");
  // Pairs 0-3 (all of batch 0) and pair 5 are not refused when asked plainly.
  const data = dataset(
    "qc.json",
    flipattackRecords(16, (i) => (i < 4 || i === 5 ? `NOREFUSE story ${i}` : `Write a story ${i}`)),
  );
  const args = [...base(data, runDir), "--judge", "openai", "--judge-url", judgeUrl, "--judge-model", "m"];
  const env = { ...process.env, OPENAI_API_KEY: "test-key" };
  const first = await runAsync(args, env);
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stdout, /16 pairs in 4 batches; 3 batches and 11 pairs kept/);
  const samples = jsonl(join(runDir, "samples.jsonl"));
  const byId = new Map(samples.map((s) => [s.sample_id, s]));
  assert.equal(byId.get("5:safe").why, "plain request was not refused");
  assert.equal(byId.get("5:unsafe").why, "plain request was not refused");
  assert.equal(byId.get("5:unsafe").verdict.isRefusal, false);
  assert.equal(byId.get("6:unsafe").kept, true);
  const batches = JSON.parse(readFileSync(join(runDir, "batches.json"), "utf8")).batches;
  assert.deepEqual(
    batches.map((b: { kept: boolean }) => b.kept),
    [false, true, true, true],
  );
  const experts = JSON.parse(readFileSync(join(runDir, "experts.json"), "utf8"));
  assert.deepEqual(experts.per_batch[0].experts, []);

  const before = judgeRequests;
  const again = await runAsync(args, env);
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, /resumed and finished/);
  assert.equal(judgeRequests - before, 1, "only the preflight question is asked again");
});

test("kill -9 of the engine mid-run: the rerun completes with every sample exactly once", async (t) => {
  const runDir = join(tempDir(t), "run");
  const data = dataset("kill.json", flipattackRecords(48));
  const args = [...base(data, runDir), "--qc", "off", "--compute-batch", "8", "--max-new-tokens", "64"];
  const child = spawn(BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const samplesDir = join(runDir, "samples");
  while (!(existsSync(samplesDir) && readdirSync(samplesDir).length >= 2)) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const engine = spawnSync("pgrep", ["-P", String(child.pid), "-f", "steermoe_engine"], { encoding: "utf8" });
  process.kill(Number(engine.stdout.trim()), "SIGKILL");
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  assert.equal(code, 1);
  assert.match(stderr, /steermoe: the engine was killed \(SIGKILL\)/);
  const done = readdirSync(samplesDir).length;
  assert.ok(done >= 2 && done < 12, `${done} batches done before the kill`);

  const rerun = run(args);
  assert.equal(rerun.status, 0, rerun.stderr);
  const ids = jsonl(join(runDir, "samples.jsonl")).map((s) => s.sample_id);
  assert.equal(ids.length, 96);
  assert.equal(new Set(ids).size, 96);
});

test("Ctrl-C stops after the batch in hand and the same command resumes", async (t) => {
  const runDir = join(tempDir(t), "run");
  const data = dataset("sigint.json", flipattackRecords(48));
  const args = [...base(data, runDir), "--qc", "off", "--compute-batch", "8", "--max-new-tokens", "64"];
  const child = spawn(BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  const samplesDir = join(runDir, "samples");
  while (!(existsSync(samplesDir) && readdirSync(samplesDir).length >= 1)) {
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGINT");
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  assert.equal(code, 130);
  assert.match(out, /stopped after \d+\/12 batches; rerun the same command to resume/);
  assert.equal(existsSync(join(runDir, "samples.jsonl")), false);
  const rerun = run(args);
  assert.equal(rerun.status, 0, rerun.stderr);
  assert.equal(jsonl(join(runDir, "samples.jsonl")).length, 96);
});

test("settings from a YAML config file, flags on top; a rerun with other settings is refused", async (t) => {
  const runDir = join(tempDir(t), "run");
  const data = dataset("settings.json", flipattackRecords(8));
  const config = join(dir, "analyze.yaml");
  writeFileSync(config, "qc: false\nbatch:\n  size: 8\nsampling:\n  maxNewTokens: 3\n  temperature: 0\n");
  assert.equal(run([...base(data, runDir), "--config", config]).status, 0);
  const stored = JSON.parse(readFileSync(join(runDir, "config.json"), "utf8")).settings;
  assert.deepEqual(
    [stored.qc, stored.batch.size, stored.sampling.maxNewTokens, stored.sampling.temperature],
    [false, 8, 12, 0],
  );
  const changed = run([...base(data, runDir), "--config", config, "--max-new-tokens", "5"]);
  assert.equal(changed.status, 1);
  assert.match(changed.stderr, /was made with other settings \(sampling\.maxNewTokens 12 → 5\)/);
});

test("bad input: one line naming what to fix, non-zero exit, no run folder left", async (t) => {
  const tmp = tempDir(t);
  const dense = await buildTiny(tmp, "llama");
  const good = flipattackRecords(8);
  const cases: [string, string[], RegExp][] = [
    ["empty dataset", base(dataset("empty.json", []), ""), /empty\.json: the file has no records/],
    [
      "missing goal",
      base(dataset("nogoal.json", [good[0]!, { ...good[1]!, goal: undefined }]), ""),
      /nogoal\.json record 1 field goal: missing/,
    ],
    [
      "bad all_prompt",
      base(dataset("badprompt.json", [{ ...good[0]!, all_prompt: 3 }]), ""),
      /badprompt\.json record 0 field all_prompt: expected a string or a list/,
    ],
    [
      "duplicate ids",
      base(dataset("dup.json", [good[0]!, good[0]!]), ""),
      /dup\.json record 1 field id: duplicate id 0/,
    ],
    [
      "batch too small",
      [...base(dataset("ok.json", good), ""), "--batch-size", "1"],
      /option '--batch-size <n>' argument '1' is invalid\. expected a whole number >= 2/,
    ],
    [
      "ratio out of range",
      [...base(dataset("ok2.json", good), ""), "--safe-ratio", "1.5"],
      /--safe-ratio.*expected a number < 1/,
    ],
    ["too few pairs", base(dataset("few.json", good.slice(0, 3)), ""), /needs? .*4 pairs.*3/],
    [
      "judge unreachable",
      [
        ...base(dataset("ok3.json", good), ""),
        "--judge",
        "openai",
        "--judge-url",
        `http://127.0.0.1:${await freePort()}/v1`,
        "--judge-model",
        "m",
      ],
      /judge endpoint http:\/\/127\.0\.0\.1:\d+\/v1\S* is unreachable \(ECONNREFUSED\)/,
    ],
    [
      "not MoE",
      [...base(dataset("ok4.json", good), ""), "--model", dense, "--qc", "off"],
      /'llama' is a dense model/,
    ],
  ];
  for (const [name, args, expected] of cases) {
    const runDir = join(tmp, `run-${name.replaceAll(" ", "-")}`);
    const withRun = args.map((a, i) => (args[i - 1] === "--run" ? runDir : a));
    const result = spawnSync(BIN, withRun, {
      encoding: "utf8",
      env: { ...process.env, OPENAI_API_KEY: "k" },
    });
    assert.notEqual(result.status, 0, name);
    const lines = result.stderr.trim().split("\n");
    assert.equal(lines.length, 1, `${name}: ${result.stderr}`);
    assert.match(lines[0]!, /^steermoe: /, name);
    assert.match(lines[0]!, expected, `${name}: ${result.stderr}`);
    assert.equal(existsSync(runDir), false, `${name} left ${runDir} behind`);
  }
});
