// The shared vocabulary: what a conversation and a sample are, what a model looks like to the
// method, which experts of which layers. Everything else (engine protocol, run files, recipes)
// builds on these.
import { z } from "zod";
import { UserError } from "./errors.js";
import { snakeCase } from "./io/casing.js";

export const Role = z.enum(["system", "user", "assistant"]);
export const Message = z.strictObject({ role: Role, content: z.string() });
export const Messages = z.array(Message).min(1);
export type Message = z.infer<typeof Message>;
export type Messages = z.infer<typeof Messages>;

export const SampleLabel = z.enum(["safe", "unsafe"]);
export type SampleLabel = z.infer<typeof SampleLabel>;

/**
 * A sample: one prompt of an analysis batch, where the BatchPlan put it. Snake_case, as it is
 * written: every run file that holds samples (io/run-files.ts) extends it with what a later stage
 * adds (generation, verdict, quality control, training target).
 */
export const Sample = z.object({
  sample_id: z.string(),
  pair_id: z.string(),
  batch_idx: z.number().int(),
  in_batch_idx: z.number().int(),
  label: SampleLabel,
  messages: Messages,
});
export type Sample = z.infer<typeof Sample>;

/** File name → size and digest of every file of the model folder (engine fingerprint.py). */
export const ModelFingerprint = z.record(z.string(), z.string());
export type ModelFingerprint = z.infer<typeof ModelFingerprint>;

export const ModelInfo = snakeCase(
  z.object({
    source: z.string(),
    modelType: z.string(),
    architecture: z.string(),
    className: z.string(),
    numLayers: z.number().int(),
    moeLayers: z.array(z.number().int()),
    numExperts: z.number().int(),
    topK: z.number().int(),
    normalizeTopk: z.boolean(),
    routingFamily: z.string(),
    /** [groups, groups chosen per token] where the router chooses groups before experts (DeepSeek-V3). */
    expertGroups: z.tuple([z.number().int(), z.number().int()]).nullable(),
    /** Per MoE layer (decoder-layer index as key), the block's always-on experts: not routed, never counted as experts. */
    sharedExperts: z.record(z.string(), z.array(z.string())),
    hiddenSize: z.number().int(),
    vocabSize: z.number().int(),
    dtype: z.string(),
    device: z.string(),
    parameters: z.object({
      total: z.number(),
      attention: z.number(),
      routers: z.number(),
      experts: z.number(),
      oneExpert: z.number(),
      other: z.number(),
    }),
    chatTemplate: z.boolean(),
    /** The transformers experts implementation each phase runs (engine/steermoe_engine/models.py
     * EXPERTS_KERNELS); null where the model's experts have only their own, or on a server. */
    expertsKernels: z.object({ prefill: z.string(), decode: z.string() }).nullable(),
    /** Positions the model takes, prompt and generation together; null when nothing says. */
    context: z.number().int().nullable(),
    /** Memory the KV cache holds per token of one sequence. */
    kvBytesPerToken: z.number().int(),
    attentionHeads: z.number().int(),
    /** "eager" scores a whole prompt at once (memory grows with its square); sdpa and others do not. */
    attentionImplementation: z.string(),
    /** Every operation takes its deterministic algorithm (--deterministic). */
    deterministic: z.boolean(),
    /** What a resumed run must find again (empty for a hub model not found in the local cache). */
    fingerprint: ModelFingerprint,
  }),
);
export type ModelInfo = z.output<typeof ModelInfo>;

/** Experts per MoE layer, keyed by decoder-layer index (JSON keys are strings). */
export const LayerExpertsSchema = z.record(z.string(), z.array(z.number().int()));
export type LayerExperts = z.infer<typeof LayerExpertsSchema>;

/** One expert of one MoE layer. */
export const ExpertRef = z.object({
  /** Decoder-layer index (not the position among MoE layers). */
  layer: z.number().int().nonnegative(),
  expert: z.number().int().nonnegative(),
});
export type ExpertRef = z.infer<typeof ExpertRef>;

/**
 * The one check of an expert set against a model, wherever the set comes from (an experts file for
 * train, a steering map): every expert exists, none is named twice. `what` names the set's source.
 */
export function checkExperts(
  set: readonly ExpertRef[],
  model: Pick<ModelInfo, "source" | "moeLayers" | "numExperts">,
  what: string,
): void {
  const named = new Set<number>();
  for (const { layer, expert } of set) {
    if (!model.moeLayers.includes(layer)) {
      throw new UserError(
        `${what}: layer ${layer} is not an MoE layer of ${model.source} (${model.moeLayers.join(", ")})`,
      );
    }
    if (!(expert >= 0 && expert < model.numExperts))
      throw new UserError(`${what}: layer ${layer} has no expert ${expert} (0..${model.numExperts - 1})`);
    if (named.has(layer * model.numExperts + expert))
      throw new UserError(`${what}: layer ${layer} expert ${expert} is given twice`);
    named.add(layer * model.numExperts + expert);
  }
}
