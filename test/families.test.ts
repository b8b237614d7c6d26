// analyze → train → eval through the CLI and the engine on a tiny model of each routing family
// beyond softmax top-k (which the other end-to-end tests run on OLMoE and Mixtral). The families
// run side by side: each is a chain of engine processes, mostly start-up.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { buildTiny, flipattackRecords, PACKAGE_ROOT, PYTHON, runAsync, tempDir } from "./helpers.js";
import { spawn } from "node:child_process";

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

async function ok(args: string[]): Promise<string> {
  const result = await runAsync(args);
  assert.equal(result.status, 0, `${args[0]}: ${result.stderr}`);
  return result.stdout;
}

/** Names of the tensors (or expert slices) that differ between two model folders. */
function differing(a: string, b: string): Promise<string[]> {
  const child = spawn(PYTHON, [join(PACKAGE_ROOT, "test", "fixtures", "compare_models.py"), a, b]);
  let stdout = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  return new Promise((resolve) => child.on("close", () => resolve(JSON.parse(stdout).differ)));
}

test("analyze → train → eval on a tiny model of each routing family", { concurrency: true }, async (t) => {
  const dir = tempDir(t);
  await Promise.all(
    Object.entries(FAMILIES).map(([family, arch]) =>
      t.test(`${arch} (${family})`, async () => {
        const model = await buildTiny(dir, arch, 3);
        const data = join(dir, `${arch}-data.json`);
        writeFileSync(data, JSON.stringify(flipattackRecords(8)));
        const benign = join(dir, `${arch}-benign.jsonl`);
        writeFileSync(
          benign,
          [0, 1].map((i) => JSON.stringify({ id: `b${i}`, prompt: `Name a fruit ${i}` })).join("\n"),
        );
        const analysis = join(dir, `${arch}-analysis`);
        await ok([
          ...["analyze", "--data", data, "--model", model, "--run", analysis],
          ...["--batch-size", "4", "--qc", "off", "--max-new-tokens", "6"],
        ]);

        const out = join(dir, `${arch}-train`);
        await ok(["train", "--run", analysis, "--out", out, "--epochs", "1", "--lr", "1e-2"]);
        const metadata = JSON.parse(readFileSync(join(out, "training_metadata.json"), "utf8"));
        const trained = new Set(
          metadata.trained_experts.map((e: { layer: number; expert: number }) => `${e.layer}:${e.expert}`),
        );
        assert.ok(trained.size > 0);
        const differ = await differing(model, join(out, "final_model"));
        assert.ok(differ.length > 0);
        for (const name of differ) {
          const m = /^model\.layers\.(\d+)\.\w+\.experts\.\w+\[(\d+)\]$/.exec(name);
          assert.ok(m && trained.has(`${m[1]}:${m[2]}`), `${name} changed but is not a trained expert`);
        }

        const evaluated = await ok([
          ...["eval", "--model", `trained=${out}`, "--out", join(dir, `${arch}-eval`)],
          ...["--jailbreaks", data, "--benign", benign, "--limit", "2", "--max-new-tokens", "6"],
        ]);
        assert.match(evaluated, /^trained\s+\d/m);
      }),
    ),
  );
});
