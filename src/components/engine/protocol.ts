// Schemas of everything the engine sends back. Every reply is parsed here before any other code
// sees it, so the rest of the system can trust its types.
import { z } from "zod";
import { snakeCase } from "../io/casing.js";
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
    /** What a resumed run must find again (empty for a hub model not found in the local cache). */
    fingerprint: ModelFingerprint,
  }),
);
export type ModelInfo = z.output<typeof ModelInfo>;

/** Where the engine writes the routing of the next `sampleIds.length` samples of a request. */
export const RoutingShardRequest = snakeCase(z.object({ path: z.string(), sampleIds: z.array(z.string()) }));
export type RoutingShardRequest = z.output<typeof RoutingShardRequest>;

export const GeneratedSample = snakeCase(
  z.object({
    promptIds: array(["int32"], 1),
    generatedIds: array(["int32"], 1),
    text: z.string(),
    finishReason: z.enum(["eos", "length", "replay"]),
  }),
);
export type GeneratedSample = z.output<typeof GeneratedSample>;

export const RenderedIds = z.object({
  prompts: z.array(array(["int32"], 1)),
  fulls: z.array(array(["int32"], 1)).optional(),
});
export type RenderedIds = z.infer<typeof RenderedIds>;

/** What a server generated for one prompt; the expert ids ([tokens, moe_layers, top_k]) only when recorded. */
export const ServedSample = snakeCase(
  z.object({
    promptIds: array(["int32"], 1),
    generatedIds: array(["int32"], 1),
    prompt: array(["uint8", "uint16"], 3).optional(),
    generation: array(["uint8", "uint16"], 3).optional(),
  }),
);
export type ServedSample = z.output<typeof ServedSample>;

export const GenerateResult = z.object({ samples: z.array(GeneratedSample) });

export const TokenCounts = z.object({ lengths: array(["int32"], 1) });

export const TinyModelResult = z.object({
  path: z.string(),
  files: z.record(z.string(), z.string()),
  parameters: z.number(),
  /** The released checkpoint whose routing the model keeps (built with `released`), else null. */
  mirrors: z.string().nullable(),
});
export type TinyModelResult = z.infer<typeof TinyModelResult>;

export const Empty = z.object({});

/** Experts per MoE layer, keyed by decoder-layer index (JSON keys are strings). */
export const LayerExpertsSchema = z.record(z.string(), z.array(z.number().int()));
export type LayerExperts = z.infer<typeof LayerExpertsSchema>;

/** One analysis batch, sent once with the setup; steps name it by its index in `batches`. */
const TrainBatchRequest = z.object({
  conversations: z.array(Messages),
  /** The samples' ids, to name one the engine cannot tokenize (else their positions). */
  ids: z.array(z.string()).optional(),
  labels: z.array(z.string()),
  /** This batch's routing mask: per layer, the only experts tokens may reach. */
  allowed: LayerExpertsSchema,
});

export const TrainSetupRequest = snakeCase(
  z.object({
    trainable: z.enum(["experts", "all", "router"]),
    experts: LayerExpertsSchema,
    weightDecay: z.number(),
    gradClip: z.number(),
    lossOn: z.enum(["assistant", "all"]),
    routerLoss: z.object({
      kind: z.enum(["none", "forward", "reverse", "symmetric"]),
      weight: z.number(),
      layers: z.enum(["all", "masked"]),
    }),
    gradientCheckpointing: z.boolean(),
    /** Samples per forward pass; null: the whole batch at once. */
    microBatch: z.number().int().nullable(),
    seed: z.number().int(),
    batches: z.array(TrainBatchRequest),
  }),
);
export type TrainSetupRequest = z.output<typeof TrainSetupRequest>;
export const TrainSetupResult = snakeCase(z.object({ trainableParameters: z.number().int() }));

export interface TrainStepRequest {
  batch: number;
  lr: number;
}
/** Where a checkpoint stands; the engine keeps it in the checkpoint file's metadata. */
export const CheckpointPosition = z.object({ step: z.number().int(), epoch: z.number().int() });
export type CheckpointPosition = z.infer<typeof CheckpointPosition>;
export const TrainStepResult = snakeCase(
  z.object({
    /** null when not finite: the engine made no update, and training stops. */
    loss: z.number().nullable(),
    routerLoss: z.number().nullable(),
    gradNorm: z.number().nullable(),
    /** The trained weights' norm after the step over before it. */
    weightGrowth: z.number().nullable(),
    tokens: z.number(),
    seconds: z.number(),
    optimizerStateBytes: z.number(),
  }),
);
export type TrainStepResult = z.output<typeof TrainStepResult>;

export const EngineErrorReply = z.object({
  type: z.string(),
  message: z.string(),
  traceback: z.string().optional(),
});

export const Reply = z.discriminatedUnion("ok", [
  z.object({ id: z.number(), ok: z.literal(true), result: z.unknown() }),
  z.object({ id: z.number(), ok: z.literal(false), error: EngineErrorReply }),
]);
