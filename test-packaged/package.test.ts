// The README's main job: the demo on the model organism, from the npm package installed in an empty
// folder, with the numbers it prints itself, and the Python walkthrough (docs/python.md) in that
// same folder.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

test("npm install of the packed tarball, steermoe setup, demo: the method works, and docs/python.md runs there", (t) => {
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
  const again = spawnSync("npx", ["--no", "steermoe", "demo"], { cwd: project, env, encoding: "utf8" });
  assert.equal(again.status, 1);
  assert.match(again.stderr, /already exists and is not empty; choose another --out or pass --overwrite/);

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
