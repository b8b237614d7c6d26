// configs/<model>.yaml: the method's reference settings for released models, read as the CLI
// reads them, and checked against the tiny model that keeps each checkpoint's routing.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { parse as parseYaml } from "yaml";
import { settingsFromFlags } from "../src/cli/flags.js";
import { program } from "../src/cli/index.js";
import { withEngine } from "../src/components/engine/client.js";
import { parseAnalyzeSettings } from "../src/recipes/analyze.js";
import { parseEvalSettings } from "../src/recipes/evaluate.js";
import { parseTrainSettings } from "../src/recipes/train.js";
import { PACKAGE_ROOT, tempDir } from "./helpers.js";

const CONFIGS = join(PACKAGE_ROOT, "configs");
// The model type of each config's checkpoint: its tiny mirror is built from this.
const MODEL_TYPES: Record<string, string> = {
  "olmoe-1b-7b-0125-instruct.yaml": "olmoe",
  "qwen3-30b-a3b.yaml": "qwen3_moe",
  "mixtral-8x7b-instruct.yaml": "mixtral",
  "gpt-oss-20b.yaml": "gpt_oss",
  "deepseek-v2-lite-chat.yaml": "deepseek_v2",
};

/** A command's settings from `args`, as the CLI builds them, without running the command. */
async function settingsOf(command: string, args: string[]): Promise<unknown> {
  const cli = program().exitOverride();
  const sub = cli.commands.find((c) => c.name() === command)!;
  let settings: unknown;
  sub.action(() => {
    settings = settingsFromFlags(sub);
  });
  await cli.parseAsync(["node", "steermoe", command, ...args]);
  return settings;
}

test("configs/: every reference config parses for analyze, train and eval, and its layout is the checkpoint's", async (t) => {
  const files = readdirSync(CONFIGS).filter((f) => f.endsWith(".yaml"));
  assert.deepEqual(files.sort(), Object.keys(MODEL_TYPES).sort());
  const dir = tempDir(t);
  await withEngine({}, async (engine) => {
    for (const file of files) {
      const path = join(CONFIGS, file);
      const text = readFileSync(path, "utf8");
      const source = (parseYaml(text) as { model: { source: string } }).model.source;
      const analyze = parseAnalyzeSettings(
        await settingsOf("analyze", ["--config", path, "--data", "pairs.json", "--run", "r"]),
      );
      assert.deepEqual([analyze.model.source, analyze.model.dtype], [source, "bf16"], file);
      const train = parseTrainSettings(await settingsOf("train", ["--config", path, "--run", "r"]));
      assert.deepEqual([train.model?.source, train.model?.dtype], [source, "bf16"], file);
      const evaluate = parseEvalSettings(
        await settingsOf("eval", [
          "--config",
          path,
          "--jailbreaks",
          "j.json",
          "--benign",
          "b.json",
          "--out",
          "o",
        ]),
      );
      assert.deepEqual(
        evaluate.models!.map((m) => [m.name, m.model.dtype]),
        [
          ["before", "bf16"],
          ["after", "bf16"],
        ],
        file,
      );
      assert.equal(evaluate.models![0]!.model.source, source, file);

      // The header's "N experts, top-K" is the released routing the tiny mirror keeps.
      const [, experts, topK] = /of (\d+) (?:routed )?experts, top-(\d+)/.exec(text) ?? [];
      const out = join(dir, file);
      const built = await engine.buildTiny(MODEL_TYPES[file]!, out, 0, { released: true });
      assert.equal(built.mirrors, source, file);
      const info = await engine.load({ source: out, dtype: "fp32", device: "cpu" });
      assert.deepEqual([info.numExperts, info.topK], [Number(experts), Number(topK)], file);
    }
  });
});
