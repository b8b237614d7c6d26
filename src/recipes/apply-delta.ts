// apply-delta: a fine-tuned model from its base model and the expert delta that train wrote.
import { existsSync } from "node:fs";
import { z } from "zod";
import { ModelConfig } from "../components/config.js";
import { withEngine, type EngineHandle } from "../components/engine/client.js";
import { UserError } from "../components/errors.js";
import { checkDeltaFits, readDelta } from "../components/method/delta.js";

export const ApplyDeltaSettings = z.strictObject({
  model: ModelConfig,
  /** expert_delta.safetensors written by train. */
  delta: z.string().min(1),
  /** The model folder to write; it must not exist yet. */
  out: z.string().min(1),
});
export type ApplyDeltaSettings = z.input<typeof ApplyDeltaSettings>;

export async function applyDelta(
  config: ApplyDeltaSettings,
  options: { engine?: EngineHandle } = {},
): Promise<number> {
  if (!existsSync(config.delta)) throw new UserError(`${config.delta}: no such delta file`);
  if (existsSync(config.out)) throw new UserError(`${config.out} already exists; choose a new --out`);
  const delta = readDelta(config.delta);
  return withEngine(options.engine ?? {}, async (e) => {
    checkDeltaFits(delta, await e.load(config.model));
    const experts = await e.applyDelta(config.delta);
    await e.saveModel(config.out);
    return Object.values(experts).reduce((n, list) => n + list.length, 0);
  });
}
