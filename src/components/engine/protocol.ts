// Schemas of everything the engine sends back. Every reply is parsed here before any other code
// sees it, so the rest of the system can trust its types.
import { z } from "zod";
import { snakeCase } from "../io/casing.js";
import { LayerExpertsSchema, Messages } from "../domain.js";
import { isNDArray, type NDArray } from "./frames.js";

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
export const TrainSetupResult = snakeCase(
  z.object({
    trainableParameters: z.number().int(),
    /** Every sample's tokens, batches in order: what the setup tokenized, for the context check. */
    lengths: z.array(z.number().int()),
  }),
);
export type TrainSetupResult = z.output<typeof TrainSetupResult>;

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
