// The files of run folders, one schema each: writers build values of these types, every reader
// parses with them (docs/run-folder.md).
import { z } from "zod";
import { ModelConfig } from "../config.js";
import { ExpertRef, Messages, ModelFingerprint, ModelInfo, Sample } from "../domain.js";
import { Verdict } from "../judge/verdict.js";
import { DeltaMetadata } from "../method/delta.js";
import { ExpertSetSchema } from "../method/riskdiff.js";

const int = z.number().int();
/** JSON has no NaN or infinity: JSON.stringify writes them as null. */
const finite = z.number().nullable();

const FinishReason = z.enum(["eos", "length", "replay"]);

/** Where a sample's routing is: the shard (run-relative) and its place among the shard's samples. */
export const RoutingLocation = z.object({ shard: z.string(), index: int });

/** One generated sample of `generate`, a line of OUT/samples.jsonl. */
export const GeneratedRow = z.object({
  id: z.string(),
  messages: Messages,
  prompt_token_ids: z.array(int),
  generated_token_ids: z.array(int),
  text: z.string(),
  finish_reason: FinishReason,
  routing: RoutingLocation,
});
export type GeneratedRow = z.infer<typeof GeneratedRow>;

/** OUT/meta.json of generate: what made the samples, and whether every conversation is in. The
 * settings, model description and backends are stored as given. */
export const GenerateMeta = z.looseObject({
  format: z.literal("steermoe.generate.v1"),
  complete: z.boolean(),
  samples: int,
  total: int,
  /** With --skip-long: the conversations left out because they were over the length limit. */
  skipped_long: z.array(z.string()).optional(),
  config: z.record(z.string(), z.unknown()),
  compute_batch_size: int,
  model: z.record(z.string(), z.unknown()),
});
export type GenerateMeta = z.infer<typeof GenerateMeta>;

/** One generated sample of an analysis batch, a line of RUN/samples/batch-NNNNN.jsonl. */
export const SampleRow = Sample.extend({
  seed: int,
  prompt_token_ids: z.array(int),
  generated_token_ids: z.array(int),
  text: z.string(),
  finish_reason: FinishReason,
  verdict: Verdict.nullable(),
  qc_pass: z.boolean().nullable(),
  routing: RoutingLocation,
});
export type SampleRow = z.infer<typeof SampleRow>;

/** A line of RUN/samples.jsonl: every sample of the analysis, with what quality control decided. */
export const AnalyzedSampleRow = SampleRow.extend({ kept: z.boolean(), why: z.string().nullable() });
export type AnalyzedSampleRow = z.infer<typeof AnalyzedSampleRow>;

/** A line of RUN/sft_dataset.jsonl: a kept sample with its assistant target as the last message. */
export const SftRow = Sample.extend({
  target_source: z.enum(["model", "self", "template", "openai"]),
});
export type SftRow = z.infer<typeof SftRow>;

const PerBatchSets = z.array(z.object({ batch_idx: int, experts: ExpertSetSchema }));

/** RUN/experts.json: the expert sets analyze chose, and every expert ranked by mean risk_diff. */
export const ExpertsFile = z.object({
  num_layers: int,
  moe_layers: z.array(int),
  num_experts: int,
  selection: z.record(z.string(), z.unknown()),
  global: ExpertSetSchema,
  union: ExpertSetSchema,
  per_batch: PerBatchSets,
  random: z.object({ union: ExpertSetSchema, per_batch: PerBatchSets }).optional(),
  /** Every (layer, expert), in risk_diff.csv's order: mean risk_diff descending. */
  ranking: z.array(ExpertRef),
});
export type ExpertsFile = z.infer<typeof ExpertsFile>;

/** A row of RUN/risk_diff.{csv,parquet}: one (layer, expert), rows by mean risk_diff descending.
 * Non-finite numbers (a CI of one batch) read as null, as in JSON. */
export const RiskDiffRow = z.object({
  layer: int,
  expert: int,
  label: z.string(),
  a_safe: finite,
  d_safe: finite,
  a_unsafe: finite,
  d_unsafe: finite,
  a_safe_n: finite,
  a_unsafe_n: finite,
  risk_diff: finite,
  std: finite,
  ci_low: finite,
  ci_high: finite,
  frac_positive: finite,
  n_batches: finite,
});
export type RiskDiffRow = z.infer<typeof RiskDiffRow>;

/** RUN/batches.json: the batch plan, and once the analysis is done, what quality control kept. */
export const BatchesFile = z.object({
  batch_size: int,
  safe_ratio: z.number(),
  batches: z.array(
    z.object({
      batch_idx: int,
      sample_ids: z.array(z.string()),
      kept: z.boolean().optional(),
      kept_sample_ids: z.array(z.string()).optional(),
    }),
  ),
  /** With --skip-long: the pairs left out because a prompt was over the length limit. */
  skipped_long: z.array(z.string()).optional(),
});
export type BatchesFile = z.infer<typeof BatchesFile>;

/** RUN/config.json of any run: its kind, settings and model fingerprint (openRun resumes or
 * refuses by them; runs made before fingerprints were recorded have none). */
export const RunConfig = z.looseObject({
  kind: z.string(),
  settings: z.unknown(),
  model: z.looseObject({ fingerprint: ModelFingerprint.optional() }).optional(),
  /** Backends (engine, servers) a resume ran on that the run did not start on. */
  resumed_on: z.array(z.record(z.string(), z.unknown())).optional(),
});
export type RunConfig = z.infer<typeof RunConfig>;

/** RUN/config.json of an analysis, as far as training reads it. */
export const AnalysisConfig = z.looseObject({
  kind: z.literal("analyze"),
  settings: z.looseObject({ model: ModelConfig, batch: z.object({ size: int, safeRatio: z.number() }) }),
  model: ModelInfo,
});

/** A line of RUN/train/train_log.jsonl: one optimizer step. */
export const TrainLogRow = z.object({
  step: int,
  epoch: int,
  batch_idx: int,
  sample_ids: z.array(z.string()),
  loss: finite,
  router_loss: finite,
  lr: z.number(),
  grad_norm: finite,
  tokens: int,
  seconds: z.number(),
});
export type TrainLogRow = z.infer<typeof TrainLogRow>;

const LabelledExpert = ExpertRef.extend({ label: z.string() });

/** RUN/train/expert_delta.json: the delta's own metadata, what it holds and how to apply it. */
export const ExpertDeltaFile = DeltaMetadata.extend({
  experts: z.array(LabelledExpert),
  tensors: z.array(z.string()),
  apply: z.string(),
});
export type ExpertDeltaFile = z.infer<typeof ExpertDeltaFile>;

/** RUN/train/training_metadata.json. */
export const TrainingMetadata = z.looseObject({
  model: z.string(),
  model_type: z.string(),
  batches: int,
  batch_sizes: z.array(int),
  steps: int,
  epochs: int,
  trainable: z.enum(["experts", "all", "router"]),
  trainable_parameters: int,
  optimizer_state_bytes: int,
  trained_experts: z.array(LabelledExpert),
  unique_trained_experts: int,
  total_experts: int,
  per_batch_mask_counts: z.array(z.object({ batch_idx: int, experts: int })),
  settings: z.record(z.string(), z.unknown()),
  final_loss: finite,
  seconds: z.number(),
});
export type TrainingMetadata = z.infer<typeof TrainingMetadata>;

/** A proportion with its 95% Wilson interval (method/stats.ts `Rate`). */
const Rate = z.object({ rate: z.number(), low: z.number(), high: z.number(), k: int, n: int });

export const EvalSet = z.enum(["jailbreak", "plain", "benign"]);

/**
 * A benchmark's rates: attack success (harmful prompts not refused), refusal (harmful prompts
 * refused) and over-refusal (benign prompts refused).
 */
const BenchmarkRates = z.partialRecord(z.enum(["attack_success", "refusal", "over_refusal"]), Rate);

/** OUT/results.json of eval: one entry per model (and steered variant). */
export const EvalResults = z.array(
  z.object({
    name: z.string(),
    source: z.string(),
    delta: z.string().optional(),
    steered: z.boolean(),
    /** A steered variant: the model it steers and the intensity, the multiple of the map applied. */
    steer: z.object({ model: z.string(), intensity: z.number() }).optional(),
    metrics: z.partialRecord(z.enum(["attack_success", "plain_refusal", "benign_refusal"]), Rate),
    /** Answers the judge model gave that could not be read: left out of the rates. */
    judge_unreadable: int.optional(),
    /** Responses cut to the judge's token limit before judging (HarmBench's 512 tokens). */
    judge_clipped: int.optional(),
    /** Mean of the judge's own score per set (StrongREJECT's harmfulness score). */
    mean_score: z.partialRecord(EvalSet, z.number()).optional(),
    /** Per benchmark ("xstest", "strongreject:small"): its rates over all its prompts and per category. */
    benchmarks: z
      .record(
        z.string(),
        z.object({
          metrics: BenchmarkRates,
          categories: z.record(z.string(), BenchmarkRates),
          /** HarmBench copyright behaviours left out (not asked for). */
          skipped: int,
        }),
      )
      .optional(),
  }),
);
export type EvalResults = z.infer<typeof EvalResults>;

/** OUT/eval_config.json: eval's settings and backends, stored as given. Written with the first
 * results and `finished: false` until the last model is in, so a stopped comparison says so;
 * folders from before the flag have none. */
export const EvalConfig = z.looseObject({ finished: z.boolean().optional() });
export type EvalConfig = z.infer<typeof EvalConfig>;

/** A line of OUT/samples.jsonl of eval: one judged response. */
export const EvalSampleRow = z.object({
  model: z.string(),
  /** Benchmark prompts: harmful ones are "plain", benign ones "benign". */
  set: EvalSet,
  benchmark: z.string().optional(),
  category: z.string().optional(),
  id: z.string(),
  prompt: Messages,
  response: z.string(),
  is_refusal: z.boolean(),
  reason: z.string(),
  /** StrongREJECT's score in [0, 1]. */
  score: z.number().optional(),
  /** Llama Guard's violated categories. */
  categories: z.array(z.string()).optional(),
  /** The judge's answer could not be read: is_refusal carries no meaning. */
  judge_unreadable: z.boolean().optional(),
  /** The judge saw the response cut to its token limit (HarmBench's 512 tokens). */
  judge_clipped: z.boolean().optional(),
});
export type EvalSampleRow = z.infer<typeof EvalSampleRow>;
