// Schemas of everything the engine sends back. Every reply is parsed here before any other code
// sees it, so the rest of the system can trust its types.
import { z } from "zod";
import { isNDArray, type NDArray } from "./frames.js";

export const Role = z.enum(["system", "user", "assistant"]);
export const Message = z.strictObject({ role: Role, content: z.string() });
export const Messages = z.array(Message).min(1);
export type Message = z.infer<typeof Message>;
export type Messages = z.infer<typeof Messages>;

const array = (dtypes: readonly string[], rank: number) =>
  z.custom<NDArray>(
    (v) => isNDArray(v) && dtypes.includes(v.dtype) && v.shape.length === rank,
    `expected a rank-${rank} array of ${dtypes.join("|")}`,
  );

export const ReadyInfo = z.object({
  type: z.literal("ready"),
  protocol: z.literal(1),
  python: z.string(),
  torch: z.string(),
  transformers: z.string(),
  cuda: z.boolean(),
  devices: z.array(z.string()),
});
export type ReadyInfo = z.infer<typeof ReadyInfo>;

/** File name → size and digest of every file of the model folder (engine fingerprint.py). */
export const ModelFingerprint = z.record(z.string(), z.string());
export type ModelFingerprint = z.infer<typeof ModelFingerprint>;

export const ModelInfo = z.object({
  source: z.string(),
  model_type: z.string(),
  architecture: z.string(),
  class_name: z.string(),
  num_layers: z.number().int(),
  moe_layers: z.array(z.number().int()),
  num_experts: z.number().int(),
  top_k: z.number().int(),
  normalize_topk: z.boolean(),
  routing_family: z.string(),
  /** Per MoE layer (decoder-layer index as key), the block's always-on experts: not routed, never counted as experts. */
  shared_experts: z.record(z.string(), z.array(z.string())),
  hidden_size: z.number().int(),
  vocab_size: z.number().int(),
  dtype: z.string(),
  device: z.string(),
  parameters: z.object({
    total: z.number(),
    attention: z.number(),
    routers: z.number(),
    experts: z.number(),
    one_expert: z.number(),
    other: z.number(),
  }),
  chat_template: z.boolean(),
  /** Positions the model takes, prompt and generation together; null when nothing says. */
  context: z.number().int().nullable(),
  /** Memory the KV cache holds per token of one sequence. */
  kv_bytes_per_token: z.number().int(),
  attention_heads: z.number().int(),
  /** "eager" scores a whole prompt at once (memory grows with its square); sdpa and others do not. */
  attention_implementation: z.string(),
  /** What a resumed run must find again (empty for a hub model not found in the local cache). */
  fingerprint: ModelFingerprint,
});
export type ModelInfo = z.infer<typeof ModelInfo>;

/** Where the engine writes the routing of the next `sample_ids.length` samples of a request. */
export interface RoutingShardRequest {
  path: string;
  sample_ids: string[];
}

export const GeneratedSample = z.object({
  prompt_ids: array(["int32"], 1),
  generated_ids: array(["int32"], 1),
  text: z.string(),
  finish_reason: z.enum(["eos", "length", "replay"]),
});
export type GeneratedSample = z.infer<typeof GeneratedSample>;

export const GenerateResult = z.object({ samples: z.array(GeneratedSample) });

export const TokenCounts = z.object({ lengths: array(["int32"], 1) });

export const TinyModelResult = z.object({
  path: z.string(),
  files: z.record(z.string(), z.string()),
  parameters: z.number(),
});
export type TinyModelResult = z.infer<typeof TinyModelResult>;

export const Empty = z.object({});

/** Experts per MoE layer, keyed by decoder-layer index (JSON keys are strings). */
export const LayerExpertsSchema = z.record(z.string(), z.array(z.number().int()));
export type LayerExperts = z.infer<typeof LayerExpertsSchema>;

/** One analysis batch, sent once with the setup; steps name it by its index in `batches`. */
export interface TrainBatchRequest {
  conversations: Messages[];
  labels: string[];
  /** This batch's routing mask: per layer, the only experts tokens may reach. */
  allowed: LayerExperts;
}

export interface TrainSetupRequest {
  trainable: "experts" | "all" | "router";
  experts: LayerExperts;
  weight_decay: number;
  grad_clip: number;
  loss_on: "assistant" | "all";
  router_loss: {
    kind: "none" | "forward" | "reverse" | "symmetric";
    weight: number;
    layers: "all" | "masked";
  };
  gradient_checkpointing: boolean;
  /** Samples per forward pass; null: the whole batch at once. */
  micro_batch: number | null;
  seed: number;
  batches: TrainBatchRequest[];
}
export const TrainSetupResult = z.object({ trainable_parameters: z.number().int() });

export interface TrainStepRequest {
  batch: number;
  lr: number;
}
/** Where a checkpoint stands; the engine keeps it in the checkpoint file's metadata. */
export const CheckpointPosition = z.object({ step: z.number().int(), epoch: z.number().int() });
export type CheckpointPosition = z.infer<typeof CheckpointPosition>;
export const TrainStepResult = z.object({
  loss: z.number(),
  router_loss: z.number(),
  grad_norm: z.number(),
  tokens: z.number(),
  seconds: z.number(),
  optimizer_state_bytes: z.number(),
});
export type TrainStepResult = z.infer<typeof TrainStepResult>;

export const EngineErrorReply = z.object({
  type: z.string(),
  message: z.string(),
  traceback: z.string().optional(),
});

export const Reply = z.discriminatedUnion("ok", [
  z.object({ id: z.number(), ok: z.literal(true), result: z.unknown() }),
  z.object({ id: z.number(), ok: z.literal(false), error: EngineErrorReply }),
]);
