// demo: the built-in default job. Builds a tiny OLMoE model (seeded, offline), describes it, and
// generates for the example conversations with every token's experts recorded.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT, withEngine, type EngineOptions } from "../components/engine.js";
import { generate, prepareOutDir } from "./generate.js";
import { formatModelInfo, inspect } from "./inspect.js";
import { tinyModel } from "./tiny-model.js";

export interface DemoConfig {
  out: string;
  overwrite: boolean;
}

export async function demo(
  config: DemoConfig,
  options: EngineOptions = {},
  signal?: AbortSignal,
): Promise<void> {
  prepareOutDir(config.out, config.overwrite, "model");
  const model = join(config.out, "model");
  await withEngine(options, async (engine) => {
    if (!existsSync(model)) await tinyModel({ arch: "olmoe", out: model, seed: 0 }, engine);
    const { model: info } = await inspect({ source: model }, engine);
    console.log(formatModelInfo(info) + "\n");
    const summary = await generate(
      {
        model: { source: model },
        input: join(PACKAGE_ROOT, "examples", "conversations.jsonl"),
        out: join(config.out, "generate"),
        sampling: { maxNewTokens: 32 },
      },
      { engine, signal },
    );
    console.log(
      `generated ${summary.generatedTokens} tokens for ${summary.samples} conversations in ` +
        `${summary.seconds.toFixed(1)} s, routing recorded for every token → ${summary.out}`,
    );
  });
}
