// analyze → train → eval on a tiny model of each routing family beyond softmax top-k (which the
// other end-to-end tests run on OLMoE and Mixtral, through the CLI). The recipes are the CLI's own
// code; here they all run on one engine, as the demo's do, since starting an engine (importing
// torch and transformers) would be most of the time of steps this small.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { withEngine } from "../src/components/engine/client.js";
import { analyze } from "../src/recipes/analyze.js";
import { evaluate } from "../src/recipes/evaluate.js";
import { tinyModel } from "../src/recipes/tiny-model.js";
import { train } from "../src/recipes/train.js";
import { flipattackRecords, PACKAGE_ROOT, PYTHON, tempDir } from "./helpers.js";

// One architecture per family (engine/steermoe_engine/families/).
const FAMILIES = {
  gpt_oss: "gpt_oss",
  sparsemixer: "phimoe",
  softmax_corrected: "ernie4_5_moe",
  softmax_grouped: "deepseek_v2",
  sigmoid_grouped: "deepseek_v3",
  sigmoid_topk: "minimax_m2",
  llama4: "llama4_text",
};

/** Per pair of model folders, loaded back by transformers, the tensors (or expert slices) that
 * differ: one Python process for every pair. */
function differing(pairs: [string, string][]): string[][] {
  const script = join(PACKAGE_ROOT, "test", "fixtures", "compare_models.py");
  const result = spawnSync(PYTHON, [script, ...pairs.flat()], { encoding: "utf8" });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l).differ);
}

test("analyze → train → eval on a tiny model of each routing family", async (t) => {
  const dir = tempDir(t);
  const folders: [string, string][] = [];
  const trainedBy: Set<string>[] = [];
  await withEngine({}, async (engine) => {
    for (const [family, arch] of Object.entries(FAMILIES)) {
      await t.test(`${arch} (${family}): analyze, train, eval`, async () => {
        const size = { layers: 3 };
        const { path: model } = await tinyModel({ arch, out: join(dir, arch), seed: 0, size }, { engine });
        const data = join(dir, `${arch}-data.json`);
        writeFileSync(data, JSON.stringify(flipattackRecords(8)));
        const analysis = join(dir, `${arch}-analysis`);
        const analyzed = await analyze(
          {
            model: { source: model },
            data: { file: data },
            batch: { size: 4 },
            qc: false,
            sampling: { maxNewTokens: 6 },
          },
          { run: analysis, engine },
        );
        assert.ok(analyzed.complete);
        const out = join(dir, `${arch}-train`);
        const trained = await train({ run: analysis, epochs: 1, lr: 1e-2 }, { out, engine });
        assert.ok(trained.complete && trained.trainedExperts > 0);
        const metadata = JSON.parse(readFileSync(join(out, "training_metadata.json"), "utf8"));
        trainedBy.push(
          new Set(
            metadata.trained_experts.map((e: { layer: number; expert: number }) => `${e.layer}:${e.expert}`),
          ),
        );
        folders.push([model, join(out, "final_model")]);

        const benign = join(dir, `${arch}-benign.jsonl`);
        writeFileSync(
          benign,
          [0, 1].map((i) => JSON.stringify({ id: `b${i}`, prompt: `Name a fruit ${i}` })).join("\n"),
        );
        const [result] = await evaluate(
          {
            models: [{ name: "trained", model: { source: join(out, "final_model") } }],
            ...{ jailbreaks: data, benign, limit: 2, sampling: { maxNewTokens: 6 } },
          },
          { out: join(dir, `${arch}-eval`), engine },
        );
        assert.equal(result!.name, "trained");
        assert.deepEqual(Object.keys(result!.metrics).sort(), [
          "attack_success",
          "benign_refusal",
          "plain_refusal",
        ]);
      });
    }
  });
  await t.test("each trained folder loads with transformers; only its trained experts moved", () => {
    assert.equal(folders.length, Object.keys(FAMILIES).length);
    differing(folders).forEach((differ, i) => {
      assert.ok(differ.length > 0, folders[i]![1]);
      for (const name of differ) {
        const m = /^model\.layers\.(\d+)\.\w+\.experts\.\w+\[(\d+)\]$/.exec(name);
        assert.ok(m && trainedBy[i]!.has(`${m[1]}:${m[2]}`), `${name} changed but is not a trained expert`);
      }
    });
  });
});
