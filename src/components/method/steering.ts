// Test-time steering: switch experts off (their router logits set to -inf before top-k, so they
// are never chosen) or force them on (always in the top-k), with no weight changed.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { UserError, zodProblem } from "../errors.js";
import type { ModelInfo } from "../engine/protocol.js";
import { ExpertsFile } from "../io/run-files.js";
import { readJson } from "../io/store.js";
import { ExpertRef } from "./riskdiff.js";

export const Steering = z.strictObject({
  deactivate: z.array(ExpertRef).default([]),
  activate: z.array(ExpertRef).default([]),
});
export type Steering = z.infer<typeof Steering>;

/** The engine's form: {layer: {deactivate: [...], activate: [...]}}. */
export type SteerRequest = Record<string, { deactivate: number[]; activate: number[] }>;

export function readSteerFile(file: string): Steering {
  if (!existsSync(file)) throw new UserError(`${file}: no such steering file`);
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new UserError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  const parsed = Steering.safeParse(value);
  if (!parsed.success) throw new UserError(`${file} ${zodProblem(parsed.error)}`);
  return parsed.data;
}

/** The run's `top` experts by mean risk difference, switched off (or, for red-teaming, on). */
export function steerFromRun(run: string, top: number, mode: "deactivate" | "activate"): Steering {
  const experts = readJson(
    join(run, "experts.json"),
    ExpertsFile,
    "give a finished analysis run to --steer-from",
  );
  const refs = experts.ranking.slice(0, top);
  return { deactivate: mode === "deactivate" ? refs : [], activate: mode === "activate" ? refs : [] };
}

/** One-line errors for experts the model lacks, before any generation starts. */
export function steerRequest(steering: Steering, model: ModelInfo, what: string): SteerRequest {
  const request: SteerRequest = {};
  for (const mode of ["deactivate", "activate"] as const) {
    for (const { layer, expert } of steering[mode]) {
      if (!model.moe_layers.includes(layer)) {
        throw new UserError(
          `${what}: layer ${layer} is not an MoE layer of ${model.source} (${model.moe_layers.join(", ")})`,
        );
      }
      if (!(expert >= 0 && expert < model.num_experts)) {
        throw new UserError(`${what}: layer ${layer} has no expert ${expert} (0..${model.num_experts - 1})`);
      }
      (request[String(layer)] ??= { deactivate: [], activate: [] })[mode].push(expert);
    }
  }
  for (const [layer, { deactivate, activate }] of Object.entries(request)) {
    const both = activate.find((e) => deactivate.includes(e));
    if (both !== undefined)
      throw new UserError(`${what}: layer ${layer} expert ${both} is both activated and deactivated`);
    if (activate.length > model.top_k) {
      throw new UserError(
        `${what}: layer ${layer} activates ${activate.length} experts, but only top-${model.top_k} are used`,
      );
    }
    // Fewer than top-k remaining is allowed (the spare slots repeat the best remaining expert at
    // weight 0, as training's routing mask does); none remaining leaves the layer nothing to run.
    if (new Set(deactivate).size >= model.num_experts) {
      throw new UserError(`${what}: layer ${layer} switches off every expert; at least one must remain`);
    }
  }
  return request;
}
