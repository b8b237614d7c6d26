// The README's main job: the demo on the model organism, from the npm package installed in an empty
// folder, with the numbers it prints itself; then, in that same folder, the README's method as
// commands and the Python walkthrough (docs/python.md).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { assertRepaired, PACKAGE_ROOT, tempDir } from "../test/helpers.js";

/** Every DataFrame of load_run equals the file it comes from, read without steermoe. */
const LOAD_RUN_CHECK = `
import json, sys
import pandas as pd
import steermoe

root = sys.argv[1]
run = steermoe.load_run(root)
lines = lambda path: [json.loads(l) for l in open(f"{root}/{path}")]
samples = lines("samples.jsonl")
assert run.samples.sample_id.tolist() == [s["sample_id"] for s in samples]
assert run.samples.generated_token_ids.tolist() == [s["generated_token_ids"] for s in samples]
for name in ("risk_diff", "risk_diff_batches"):
    pd.testing.assert_frame_equal(getattr(run, name), pd.read_csv(f"{root}/{name}.csv"), check_dtype=False)
ranking = json.load(open(f"{root}/experts.json"))["ranking"]
assert run.experts[["layer", "expert"]].to_dict("records") == ranking
log = lines("train/train_log.jsonl")
assert run.train_log.loss.tolist() == [r["loss"] for r in log] and len(log) > 0
results = json.load(open(f"{root}/eval/results.json"))
rates = [(r["name"], m, v["rate"]) for r in results for m, v in r["metrics"].items()]
assert list(zip(run.eval.model, run.eval.metric, run.eval.rate)) == rates
for s in samples[:20]:
    assert run.routing(s["sample_id"]).shape[0] == len(s["generated_token_ids"])
    assert run.routing(s["sample_id"], "prompt").shape[0] == len(s["prompt_token_ids"])
print("load_run matches the files")
`;

/** Every file of a run folder is a row of docs/run-folder.md's tables (those of its train/ and eval/
 * in theirs too; a model folder's files are the row `final_model/`). */
function assertDocumented(run: string): void {
  const doc = readFileSync(join(PACKAGE_ROOT, "docs", "run-folder.md"), "utf8");
  const rows = new Set(
    [...doc.matchAll(/^\| (`[^|]+`) *\|/gm)].flatMap((m) =>
      [...m[1]!.matchAll(/`([^`]+)`/g)].map((n) => n[1]!),
    ),
  );
  const files = readdirSync(run, { recursive: true, encoding: "utf8" }).filter((f) =>
    statSync(join(run, f)).isFile(),
  );
  const named = (file: string) => {
    const own = file.replace(/^(train|eval)\//, "").replace(/\d{5,}/g, (digits) => "N".repeat(digits.length));
    return rows.has(own.startsWith("final_model/") ? "final_model/" : own);
  };
  assert.ok(files.length > 30, `${files.length} files`);
  assert.deepEqual(
    files.filter((f) => !named(f)),
    [],
    "docs/run-folder.md does not name these files",
  );
}

/**
 * The README's method, as commands, run as printed from a folder holding the package's bin/ and
 * organism/, on a copy of the demo's run (runs/x). Analysis and training resume it as finished,
 * which they do only for the demo's settings, data and model (each config.json): so the commands
 * are the demo's method, whose outputs the demo just made. Eval, report and docs/steering.md's sweep
 * run anew.
 */
function readmeMethod(project: string, sh: (command: string) => string): void {
  const readme = readFileSync(join(PACKAGE_ROOT, "README.md"), "utf8");
  const section = readme.split("## The method, as commands")[1]!;
  const block = /```sh\n([\s\S]*?)```/.exec(section)![1]!;
  const commands = block.split("\n").filter((l) => l.startsWith("bin/steermoe "));
  assert.deepEqual(
    commands.map((c) => c.split(" ")[1]),
    ["analyze", "train", "eval", "report"],
  );
  for (const name of ["bin", "organism"])
    symlinkSync(join("node_modules", "steermoe", name), join(project, name));
  cpSync(join(project, "runs", "demo"), join(project, "runs", "x"), {
    recursive: true,
    filter: (path) => !/[/\\](eval|report\.html)$/.test(path),
  });
  const [analyzed, trained, evaluated] = commands.map(sh);
  assert.match(analyzed!, /^resumed/m);
  assert.match(trained!, /^resumed and finished: 90 steps/m);
  assertRepaired(evaluated!);
  assert.ok(existsSync(join(project, "runs", "x", "report.html")));

  // docs/steering.md's sweep, on that run, kept small: 10 items per set, intensities 0 and 4.
  const steering = readFileSync(join(PACKAGE_ROOT, "docs", "steering.md"), "utf8");
  const sweepBlock = /A sweep on the run of the README's method[\s\S]*?```sh\n([\s\S]*?)```/.exec(
    steering,
  )![1]!;
  const [sweep, sweepReport] = sweepBlock.split("\n").filter((l) => l.startsWith("bin/steermoe "));
  assert.match(sweep!, /^bin\/steermoe eval .*--steer-sweep /);
  for (const command of [`${sweep} --limit 10 --steer-sweep 0,4`, sweepReport!]) sh(command);
  const sweepDir = join(project, "runs", "x", "sweep");
  const results = JSON.parse(readFileSync(join(sweepDir, "results.json"), "utf8")) as {
    name: string;
    steer?: { model: string; intensity: number };
    metrics: Record<string, { rate: number; low: number; high: number; k: number; n: number }>;
  }[];
  const samples = readFileSync(join(sweepDir, "samples.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { model: string; set: string; is_refusal: boolean });
  assert.deepEqual(
    results.map((r) => [r.name, r.steer?.intensity ?? 0]),
    [
      ["before", 0],
      ["before+steer×4", 4],
      ["after", 0],
      ["after+steer×4", 4],
    ],
  );
  for (const r of results) {
    // Every point's rates are its own judged samples, with a 95% interval around them.
    const jailbreaks = samples.filter((s) => s.model === r.name && s.set === "jailbreak");
    const a = r.metrics.attack_success!;
    assert.deepEqual([a.k, a.n], [jailbreaks.filter((s) => !s.is_refusal).length, 10]);
    assert.ok(a.low <= a.rate + 1e-12 && a.rate <= a.high + 1e-12); // wilson(n, n).high is 1 - 1e-16
  }
  const html = readFileSync(join(sweepDir, "report.html"), "utf8");
  assert.ok(html.includes('"steer":{"model":"after","intensity":4}'));
}

test("npm install of the packed tarball, steermoe setup, demo: the method works, the README's commands are the demo's, and docs/python.md runs there", (t) => {
  const dir = tempDir(t);
  const project = join(dir, "project");
  mkdirSync(project);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "try-steermoe", private: true }));
  // A user's environment: no engine interpreter given, the package's own cache directory. In
  // memory where there is /dev/shm: freeing the environment's 1.5 GB from disk takes a minute.
  const cache = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : dir, "steermoe-cache-"));
  t.after(() => rmSync(cache, { recursive: true, force: true }));
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CACHE_HOME: cache };
  delete env.STEERMOE_PYTHON;
  delete env.STEERMOE_SETUP_PYTHON;
  const step = (what: string, command: string, args: string[], cwd = project) => {
    const started = Date.now();
    const result = spawnSync(command, args, { cwd, env, encoding: "utf8", timeout: 600_000 });
    assert.equal(result.status, 0, `${what}\n${result.stdout}\n${result.stderr}`);
    t.diagnostic(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return result.stdout;
  };
  const tarball = step(
    "npm pack",
    "npm",
    ["pack", "--silent", "--pack-destination", dir],
    PACKAGE_ROOT,
  ).trim();
  step("npm install", "npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", join(dir, tarball)]);

  const organism = join("node_modules", "steermoe", "organism", "model");
  const early = spawnSync("npx", ["--no", "steermoe", "inspect", "--model", organism], {
    cwd: project,
    env,
    encoding: "utf8",
  });
  assert.equal(early.status, 1);
  assert.match(early.stderr, /environment is not set up \(.+\): run `steermoe setup`/);

  const setup = step("steermoe setup", "npx", ["--no", "steermoe", "setup"]);
  const python = /^python: (.+)$/m.exec(setup)![1]!;
  assert.ok(python.startsWith(join(cache, "steermoe", "0.1.0-")), python);
  assert.match(step("steermoe setup again", "npx", ["--no", "steermoe", "setup"]), /^already set up: /);

  const demo = step("steermoe demo", "npx", ["--no", "steermoe", "demo"]);
  assertRepaired(demo);
  assert.match(demo, /experts trained: \d+ of 64/);
  assert.ok(existsSync(join(project, "runs", "demo", "report.html")));
  assertDocumented(join(project, "runs", "demo"));
  const again = spawnSync("npx", ["--no", "steermoe", "demo"], { cwd: project, env, encoding: "utf8" });
  assert.equal(again.status, 1);
  assert.match(again.stderr, /already exists and is not empty; choose another --out or pass --overwrite/);

  readmeMethod(project, (command) => step(command, "sh", ["-c", command]));

  writeFileSync(join(project, "check.py"), LOAD_RUN_CHECK);
  assert.match(step("load_run", python, ["check.py", "runs/demo"]), /load_run matches the files/);
  const walkthrough = readFileSync(join(PACKAGE_ROOT, "docs", "python.md"), "utf8");
  const blocks = [...walkthrough.matchAll(/```python\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length >= 4);
  writeFileSync(join(project, "walkthrough.py"), blocks.join("\n"));
  const printed = step("docs/python.md", python, ["walkthrough.py"]);
  assert.match(printed, /^jailbreak \(\d+, 4, 4\) \(\d+, 4, 4\)$/m);
  assert.match(printed, /^ {2}after: /m);
  assert.ok(existsSync(join(project, "two-prompts.safetensors")));
});
