// Damaged run folders and checkpoints: every reader names the damaged file (and line); nothing is
// silently left out; analyze generates a damaged batch again; training falls back to the previous
// checkpoint, and stops when a learning rate blows it up. One real analysis run is made for the
// file and copied into each case before it is damaged.
import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { run, tempDir } from "../helpers.js";
import { badInputs } from "./harness.js";
import { analysedRun, analyzeArgs, copyOfRun } from "./fixtures.js";

/** A copy of the fixture run with `damage` done to it, then `args` run on it. */
function damaged(damage: (runDir: string) => void, args: (runDir: string) => string[]) {
  return async (dir: string) => {
    const copy = await copyOfRun(dir);
    damage(copy);
    return args("run");
  };
}
const cut = (path: string) => truncateSync(path, Math.floor(readFileSync(path).length / 2));
const garble = (path: string) => writeFileSync(path, "{x");
const report = () => ["report", "--run", "run", "--out", "report.html"];
const train = () => ["train", "--run", "run", "--out", "t"];

badInputs("run folders", [
  {
    name: "report on a corrupt config.json",
    setup: damaged((r) => garble(join(r, "config.json")), report),
    expect: /run\/config\.json: not valid JSON/,
    absent: ["report.html"],
  },
  {
    name: "report on a samples.jsonl cut mid-line",
    setup: damaged((r) => cut(join(r, "samples.jsonl")), report),
    expect: /run\/samples\.jsonl line \d+: not valid JSON/,
    absent: ["report.html"],
  },
  {
    name: "report on an experts.json of another shape",
    setup: damaged((r) => writeFileSync(join(r, "experts.json"), '{"a": 1}'), report),
    expect: /run\/experts\.json field \w+: /,
    absent: ["report.html"],
  },
  {
    name: "report on a risk_diff.parquet that is not Parquet",
    setup: damaged((r) => writeFileSync(join(r, "risk_diff.parquet"), "not parquet"), report),
    expect: /run\/risk_diff\.parquet: not a readable Parquet table/,
    absent: ["report.html"],
  },
  {
    name: "train on a corrupt config.json",
    setup: damaged((r) => garble(join(r, "config.json")), train),
    expect: /run\/config\.json: not valid JSON/,
    absent: ["t"],
  },
  {
    name: "train on a config.json of another kind of run",
    setup: damaged((r) => writeFileSync(join(r, "config.json"), '{"kind": "train", "settings": {}}'), train),
    expect: /run\/config\.json field kind: /,
    absent: ["t"],
  },
  {
    name: "train on a cut sft_dataset.jsonl",
    setup: damaged((r) => cut(join(r, "sft_dataset.jsonl")), train),
    expect: /run\/sft_dataset\.jsonl line \d+: not valid JSON/,
    absent: ["t"],
  },
  {
    name: "train on a run whose experts.json is gone",
    setup: damaged((r) => rmSync(join(r, "experts.json")), train),
    expect: /run\/experts\.json is missing: the analysis has not finished/,
    absent: ["t"],
  },
  {
    name: "export-steering from a damaged risk_diff.parquet",
    setup: damaged(
      (r) => writeFileSync(join(r, "risk_diff.parquet"), "not parquet"),
      () => ["export-steering", "--run", "run", "--out", "steer.json"],
    ),
    expect: /run\/risk_diff\.parquet: not a readable Parquet table/,
    absent: ["steer.json"],
  },
  {
    name: "report --run on a model folder",
    setup: async () => {
      const { model } = await analysedRun();
      return ["report", "--run", model];
    },
    expect: /is not a steermoe analysis run \(its config\.json is not analyze's\)/,
    after: async () => assert.ok(!existsSync(join((await analysedRun()).model, "report.html"))),
  },
  {
    name: "report --out over the run's config.json",
    setup: damaged(
      () => undefined,
      () => ["report", "--run", "run", "--out", "run/config.json"],
    ),
    expect: /run\/config\.json exists and is not a steermoe report; choose another --out/,
    after: (dir) => assert.match(readFileSync(join(dir, "run", "config.json"), "utf8"), /"kind": "analyze"/),
  },
  {
    name: "export-steering --out over the run's experts.json",
    setup: damaged(
      () => undefined,
      () => ["export-steering", "--run", "run", "--out", "run/experts.json"],
    ),
    expect: /run\/experts\.json exists and is not a steering map; choose another --out/,
    after: (dir) => assert.match(readFileSync(join(dir, "run", "experts.json"), "utf8"), /"ranking"/),
  },
  {
    name: "export-steering --format npy to a .json name",
    setup: () => ["export-steering", "--run", "run", "--format", "npy", "--out", "out/map.json"],
    expect: /^steermoe: --out out\/map\.json: --format npy writes a \.npy file; name it out\/map\.npy$/,
    absent: ["out"],
  },
  {
    name: "export-steering JSON to a .npy name",
    setup: () => ["export-steering", "--run", "run", "--out", "map.npy"],
    expect:
      /^steermoe: --out map\.npy: a \.npy name for a JSON map; give --format npy, or name it map\.json$/,
    absent: ["map.npy"],
  },
  {
    name: "eval --out on an analysis run",
    setup: damaged(
      () => undefined,
      () => ["eval", "--model", "m", "--out", "run", "--limit", "1"],
    ),
    expect: /run holds files eval does not write \(.*\); choose another --out/,
    after: (dir) => assert.match(readFileSync(join(dir, "run", "samples.jsonl"), "utf8"), /"batch_idx"/),
  },
  {
    name: "export-steering --top past every expert of a layer",
    setup: damaged(
      () => undefined,
      () => ["export-steering", "--run", "run", "--top", "10000", "--out", "steer.json"],
    ),
    expect:
      /run: top 10000 by mean risk difference switches off every expert of layer \d+; choose a smaller --top$/,
    absent: ["steer.json"],
  },
  // An output folder the process cannot write: /sys refuses every process, root's too.
  {
    name: "disk: eval --out in a folder that cannot be written, before anything is generated",
    setup: () => ["eval", "--model", "m", "--out", "/sys/steermoe-eval", "--limit", "1"],
    expect: /^steermoe: cannot write \/sys\/steermoe-eval\/results\.json: \/sys is not writable$/,
  },
  {
    name: "disk: report --out in a folder that cannot be written",
    setup: damaged(
      () => undefined,
      () => ["report", "--run", "run", "--out", "/sys/steermoe-report.html"],
    ),
    expect: /^steermoe: cannot write \/sys\/steermoe-report\.html: \/sys is not writable$/,
  },
  {
    name: "disk: export-steering --out in a folder that cannot be written",
    setup: damaged(
      () => undefined,
      () => ["export-steering", "--run", "run", "--out", "/sys/steermoe-steer.json"],
    ),
    expect: /^steermoe: cannot write \/sys\/steermoe-steer\.json: \/sys is not writable$/,
  },
  {
    name: "disk: tiny-model --out in a folder the engine cannot write",
    setup: () => ["tiny-model", "--out", "/sys/steermoe-tiny"],
    expect: /^steermoe: \/sys\/steermoe-tiny: (Permission denied|Operation not permitted)$/,
  },
  {
    name: "export-steering --out given a folder",
    setup: damaged(
      (r) => mkdirSync(join(r, "..", "od")),
      () => ["export-steering", "--run", "run", "--out", "od"],
    ),
    expect: /od is a folder; give a file name for the output/,
  },
  {
    name: "checkpoints: --lr 1e10 stops on an exploding or non-finite loss",
    setup: async (dir) => {
      await copyOfRun(dir);
      return ["train", "--run", "run", "--lr", "1e10", "--epochs", "2", "--checkpoint-every", "1"];
    },
    expect:
      /training diverged at step 0 \(lr 1\.00e\+10\): one step made the trained weights .* times larger; lower --lr/,
    absent: ["run/train/final_model", "run/train/expert_delta.safetensors"],
  },
]);

test("run folders: analyze generates again a batch whose routing shard is gone or whose samples are cut", async (t) => {
  const dir = tempDir(t);
  const copy = await copyOfRun(dir);
  const { model } = await analysedRun();
  rmSync(join(copy, "routing", "batch-00000.safetensors"));
  cut(join(copy, "samples", "batch-00001.jsonl"));
  const data = JSON.parse(readFileSync(join(copy, "config.json"), "utf8")).settings.data.file as string;
  const rerun = run([...analyzeArgs(copy, model), "--data", data]);
  assert.equal(rerun.status, 0, rerun.stderr);
  assert.match(
    rerun.stderr,
    /note: .*routing\/batch-00000\.safetensors is missing; generating batch 0 again/,
  );
  assert.match(
    rerun.stderr,
    /note: .*samples\/batch-00001\.jsonl line \d+: not valid JSON.*; generating batch 1 again/,
  );
  assert.match(rerun.stdout, /resumed and finished: 4 pairs in 2 batches/);
  const rows = readFileSync(join(copy, "samples.jsonl"), "utf8").trim().split("\n");
  assert.equal(rows.length, 8);
});

test("checkpoints: a cut newest checkpoint falls back to the previous one, named in a note", async (t) => {
  const dir = tempDir(t);
  const runDir = await copyOfRun(dir);
  const args = ["train", "--run", runDir, "--epochs", "2", "--checkpoint-every", "1"];
  const first = run(args);
  assert.equal(first.status, 0, first.stderr);
  const checkpoints = join(runDir, "train", "checkpoints");
  // The newest two are kept: the fallback needs the one before.
  assert.deepEqual(readdirSync(checkpoints), ["step-000003.safetensors", "step-000004.safetensors"]);
  const newest = join(checkpoints, "step-000004.safetensors");
  truncateSync(newest, Math.floor(readFileSync(newest).length / 2));
  rmSync(join(runDir, "train", "final_model"), { recursive: true });
  const rerun = run(args);
  assert.equal(rerun.status, 0, rerun.stderr);
  assert.match(
    rerun.stderr,
    /note: .*step-000004\.safetensors: incomplete or damaged safetensors file .*; resuming from the previous checkpoint .*step-000003\.safetensors/,
  );
  assert.match(rerun.stdout, /resumed and finished: 4 steps/);
  assert.ok(existsSync(join(runDir, "train", "final_model")));
  const log = readFileSync(join(runDir, "train", "train_log.jsonl"), "utf8")
    .trim()
    .split("\n");
  assert.deepEqual(
    log.map((line) => JSON.parse(line).step),
    [0, 1, 2, 3],
  );
});
