// steermoe train end to end: an analysis run on a tiny model, then expert-only training from it
// (train-interrupted.test.ts: stopped and killed runs, a separate file so the two run side by side).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { analysedTiny, differingTensors, jsonl, PYTHON, run, tempDir } from "./helpers.js";

// Removed once every test of this file has run.
const dir = tempDir({ after });
let model: string;
let analysis: string;
let trainArgs: (out: string, ...extra: string[]) => string[];

before(async () => ({ model, analysis, trainArgs } = await analysedTiny(dir)));

test("expert-only training replays the analysis batches and moves only the trained experts", (t) => {
  const out = join(tempDir(t), "train");
  const result = run(trainArgs(out));
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /done: 12 steps/);

  // Batch preservation: every step names an analysis batch and exactly its samples, in order;
  // each epoch visits every batch once, in a shuffled order.
  const batches = new Map(
    JSON.parse(readFileSync(join(analysis, "batches.json"), "utf8")).batches.map(
      (b: { batch_idx: number; kept_sample_ids: string[] }) => [b.batch_idx, b.kept_sample_ids],
    ),
  );
  const log = jsonl(join(out, "train_log.jsonl"));
  assert.equal(log.length, 12);
  for (const row of log) assert.deepEqual(row.sample_ids, batches.get(row.batch_idx));
  const orders = [0, 1].map((e) => log.filter((r) => r.epoch === e).map((r) => r.batch_idx));
  for (const order of orders) assert.deepEqual([...order].sort(), [0, 1, 2, 3, 4, 5]);
  assert.notDeepEqual(orders[0], orders[1]);
  assert.ok(log.every((r) => r.tokens > 0 && Number.isFinite(r.loss)));
  assert.equal(log[0].lr, 1e-3 / 2); // warmup: ceil(0.1 * 12) = 2 steps

  // Frozen weights: only trained experts differ from the base, byte for byte.
  const metadata = JSON.parse(readFileSync(join(out, "training_metadata.json"), "utf8"));
  const trained = new Set(
    metadata.trained_experts.map((e: { layer: number; expert: number }) => `${e.layer}:${e.expert}`),
  );
  const differ = differingTensors(model, join(out, "final_model"));
  assert.ok(differ.length > 0);
  for (const name of differ) {
    const m =
      /^model\.layers\.(\d+)\.mlp\.experts\.(?:gate_up_proj|gate_proj|up_proj|down_proj)\[(\d+)\]$/.exec(
        name,
      );
    assert.ok(m, `${name} changed but is not an expert`);
    assert.ok(trained.has(`${m[1]}:${m[2]}`), `${name} changed but was not trained`);
  }
  assert.equal(metadata.unique_trained_experts, trained.size);
  assert.ok(metadata.optimizer_state_bytes > 0);

  // The expert delta rebuilds final_model exactly.
  const rebuilt = join(tempDir(t), "rebuilt");
  const apply = run([
    "apply-delta",
    "--base",
    model,
    "--delta",
    join(out, "expert_delta.safetensors"),
    "--out",
    rebuilt,
  ]);
  assert.equal(apply.status, 0, apply.stderr);
  assert.deepEqual(differingTensors(join(out, "final_model"), rebuilt), []);

  // The delta is checked against the model before the engine touches it.
  const fewer = join(tempDir(t), "fewer");
  assert.equal(run(["tiny-model", "--out", fewer, "--experts", "4"]).status, 0);
  const checkpoint = join(tempDir(t), "checkpoint.safetensors");
  copyFileSync(join(out, "checkpoints", readdirSync(join(out, "checkpoints"))[0]!), checkpoint);
  // The delta made wrong three ways: a NaN, another model type's metadata, integer weights.
  const broken = tempDir(t);
  const made = spawnSync(
    PYTHON,
    [
      "-c",
      `import sys
from safetensors.numpy import load_file, save_file
from safetensors import safe_open
src, out = sys.argv[1], sys.argv[2]
tensors = load_file(src)
with safe_open(src, "np") as f:
    meta = f.metadata()
first = sorted(tensors)[0]
nan = dict(tensors); nan[first] = nan[first].copy(); nan[first][0, 0] = float("nan")
save_file(nan, out + "/nan.safetensors", meta)
save_file(tensors, out + "/mixtral.safetensors", {**meta, "model_type": "mixtral"})
save_file({k: v.astype("int32") for k, v in tensors.items()}, out + "/int.safetensors", meta)`,
      join(out, "expert_delta.safetensors"),
      broken,
    ],
    { encoding: "utf8" },
  );
  assert.equal(made.status, 0, made.stderr);
  for (const [base, delta, expected] of [
    [fewer, join(out, "expert_delta.safetensors"), /names layer \d expert [4-7], which .* does not have/],
    [model, checkpoint, /checkpoint\.safetensors: not a steermoe expert delta/],
    [
      model,
      join(broken, "nan.safetensors"),
      /the delta's layers\.\d+\.experts\.\d+\.\w+ holds NaN or infinite values/,
    ],
    [
      model,
      join(broken, "mixtral.safetensors"),
      /mixtral\.safetensors: a delta of a mixtral model, but .* is olmoe/,
    ],
    [
      model,
      join(broken, "int.safetensors"),
      /int\.safetensors: tensor 'layers\.\d+\.experts\.\d+\.\w+' is I32/,
    ],
  ] as const) {
    const x = join(tempDir(t), "x");
    const refused = run(["apply-delta", "--base", base, "--delta", delta, "--out", x]);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr.trim(), expected);
    assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
    assert.ok(!existsSync(x), `${delta}: ${x} was written`);
  }

  const masks = spawnSync(
    PYTHON,
    [
      "-c",
      `import numpy as np, sys
m = np.load(sys.argv[1] + "/expert_mask.npy"); b = np.load(sys.argv[1] + "/batch_routing_masks.npy")
print(m.shape, b.shape, int(m.sum()), bool((b.max(0) <= m).all()))`,
      out,
    ],
    { encoding: "utf8" },
  );
  assert.equal(masks.stdout.trim(), `(2, 8) (6, 2, 8) ${trained.size} True`);
});

test("ablations and baselines: random experts, no routing mask, full fine-tune, plain data", (t) => {
  const tmp = tempDir(t);
  for (const extra of [
    ["--experts", "random"],
    ["--routing-mask", "on", "--no-shuffle"],
    ["--trainable", "all"],
  ]) {
    const out = join(tmp, extra.join("").replace(/\W/g, ""));
    const result = run(trainArgs(out, "--epochs", "1", ...extra));
    assert.equal(result.status, 0, `${extra}: ${result.stderr}`);
    const metadata = JSON.parse(readFileSync(join(out, "training_metadata.json"), "utf8"));
    if (extra[0] === "--trainable") {
      assert.equal(existsSync(join(out, "expert_delta.safetensors")), false);
      assert.ok(differingTensors(model, join(out, "final_model")).includes("model.embed_tokens.weight"));
    } else assert.ok(metadata.unique_trained_experts > 0);
    const maskCounts = metadata.per_batch_mask_counts.map((b: { experts: number }) => b.experts);
    if (extra[1] === "on") {
      assert.deepEqual(
        jsonl(join(out, "train_log.jsonl")).map((r) => r.batch_idx),
        [0, 1, 2, 3, 4, 5],
      );
      assert.ok(maskCounts.some((n: number) => n > 0));
    } else
      assert.ok(
        maskCounts.every((n: number) => n === 0),
        `${extra}: routing mask is off by default`,
      );
  }
  const conversations = join(tmp, "convs.jsonl");
  writeFileSync(
    conversations,
    ["Hi", "Tell me a story", "What is bread?"]
      .map((q, i) =>
        JSON.stringify({
          id: i,
          messages: [
            { role: "user", content: q },
            { role: "assistant", content: "Sure." },
          ],
        }),
      )
      .join("\n"),
  );
  const plain = join(tmp, "plain");
  const result = run([
    "train",
    "--data",
    conversations,
    "--model",
    model,
    "--out",
    plain,
    "--experts",
    "all",
    "--batch-size",
    "2",
  ]);
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /done: 6 steps/);
  assert.match(result.stdout, /trained experts: (\d+) of \1\n/);
});

test("bad input: one line naming what to fix, non-zero exit, nothing written", async (t) => {
  const tmp = tempDir(t);
  const other = join(tmp, "other");
  assert.equal(run(["tiny-model", "--out", other, "--experts", "4"]).status, 0);
  const file = (name: string, value: unknown) => {
    const path = join(tmp, name);
    writeFileSync(path, JSON.stringify(value));
    return path;
  };
  const cases: [string, string[], RegExp][] = [
    ["not a run", ["--run", tmp], /config\.json is missing: give a folder made by steermoe analyze/],
    [
      "unknown layer",
      ["--run", analysis, "--experts", file("l.json", [{ layer: 7, expert: 0 }])],
      /--experts \S*l\.json: layer 7 is not an MoE layer of \S+ \(0, 1\)/,
    ],
    [
      "an expert twice",
      [
        "--run",
        analysis,
        "--experts",
        file("d.json", [
          { layer: 1, expert: 2 },
          { layer: 1, expert: 2 },
        ]),
      ],
      /--experts \S*d\.json: layer 1 expert 2 is given twice/,
    ],
    [
      "unknown expert",
      ["--run", analysis, "--experts", file("e.json", [{ layer: 1, expert: 8 }])],
      /--experts \S*e\.json: layer 1 has no expert 8 \(0\.\.7\)/,
    ],
    [
      "empty set",
      ["--run", analysis, "--experts", file("n.json", [])],
      /expert set .* is empty: nothing to train/,
    ],
    [
      "other shape",
      ["--run", analysis, "--model", other],
      /has 2 layers, MoE layers \[0,1\] and 4 experts, but the analysis measured/,
    ],
    ["lr", ["--run", analysis, "--set", "lr=0"], /train settings field lr: must be > 0/],
    ["epochs", ["--run", analysis, "--set", "epochs=0"], /train settings field epochs: must be at least 1/],
    ["neither", ["--epochs", "1"], /train needs either --run DIR or --data FILE/],
    [
      "ranks for a baseline",
      ["--run", analysis, "--nproc", "2", "--trainable", "all"],
      /--nproc 2 trains experts only; --trainable all runs in one process/,
    ],
  ];
  for (const [name, args, expected] of cases) {
    const out = join(tmp, `out-${name.replace(/\W/g, "")}`);
    const result = run(["train", ...args, "--out", out]);
    assert.notEqual(result.status, 0, name);
    const lines = result.stderr.trim().split("\n");
    assert.equal(lines.length, 1, `${name}: ${result.stderr}`);
    assert.match(lines[0]!, expected, `${name}: ${result.stderr}`);
    assert.equal(existsSync(out), false, `${name} left ${out} behind`);
  }
});
