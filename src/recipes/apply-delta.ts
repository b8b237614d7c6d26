// apply-delta: a fine-tuned model from its base model and the expert delta that train wrote.
import { existsSync } from "node:fs";
import type { z } from "zod";
import type { ModelConfig } from "../components/config.js";
import { withEngine, type EngineHandle } from "../components/engine/client.js";
import { UserError } from "../components/errors.js";
import { checkDelta } from "../components/method/delta.js";

export async function applyDelta(
  config: { model: z.input<typeof ModelConfig>; delta: string; out: string },
  engine: EngineHandle = {},
): Promise<number> {
  if (!existsSync(config.delta)) throw new UserError(`${config.delta}: no such delta file`);
  if (existsSync(config.out)) throw new UserError(`${config.out} already exists; choose a new --out`);
  return withEngine(engine, async (e) => {
    checkDelta(config.delta, await e.load(config.model));
    const experts = await e.applyDelta(config.delta);
    await e.saveModel(config.out);
    return Object.values(experts).reduce((n, list) => n + list.length, 0);
  });
}
