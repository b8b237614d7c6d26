// train: fine-tune only the unsafe experts, replaying exactly the batches the analysis measured.
//
//   analysis run → batches (same samples, same order) + expert set + per-batch routing masks
//                → one optimizer step per batch, batch order shuffled per epoch
//                → final_model/, expert_delta.safetensors, masks, metadata, train_log.jsonl
//
// `--data conversations.jsonl --model M` trains on a plain conversation file instead (fixed
// batches in file order): ordinary fine-tuning, used for example to build test models.
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { ModelConfig } from "../components/config.js";
import { readConversations } from "../components/data/conversations.js";
import {
  Engine,
  EngineError,
  withEngine,
  type EngineHandle,
  type EngineOptions,
} from "../components/engine/client.js";
import { UserError, zodProblem } from "../components/errors.js";
import { note, progress } from "../components/progress.js";
import { type TrainStepResult } from "../components/engine/protocol.js";
import { checkExperts, type ExpertRef, ModelInfo } from "../components/domain.js";
import { expertLabel, expertMask, stackedMasks, routingShape } from "../components/method/riskdiff.js";
import { DELTA_FORMAT, type DeltaMetadata } from "../components/method/delta.js";
import { checkRunFolder, openRun } from "../components/io/run.js";
import { assertUnlocked } from "../components/io/lock.js";
import { fitPrompts } from "../components/engine/prompt-limits.js";
import {
  appendJsonl,
  readJson,
  readJsonl,
  readJsonlLog,
  sha256,
  TextEncoding,
  writeJsonAtomic,
  writeJsonlAtomic,
} from "../components/io/store.js";
import { writeNpy } from "../components/io/tables.js";
import {
  epochOrder,
  ExpertList,
  intersect,
  labelled,
  layerExperts,
  learningRate,
  type TrainBatch,
  type TrainSample,
} from "../components/method/training-plan.js";
import {
  AnalysisConfig,
  ExpertsFile,
  SftRow,
  type TrainingMetadata,
  type ExpertDeltaFile,
  TrainLogRow,
} from "../components/io/run-files.js";

export const TrainSettings = z.strictObject({
  /** An analysis run folder: its batches, SFT targets and expert sets. */
  run: z.string().min(1).optional(),
  /** Or a plain conversation file (each ending with the assistant target) and a model. */
  data: z.string().min(1).optional(),
  /** How the data files' bytes are text (docs/method.md: data files): invalid UTF-8 is refused unless asked. */
  encoding: TextEncoding.default("utf8"),
  model: ModelConfig.partial({ source: true }).prefault({}),
  /** Batch size for --data (an analysis run keeps its own batches). */
  batchSize: z.number().int().min(1).default(16),
  /** batch-union | global | random (the analysis' ablation sets) | all (every expert) | path to an experts file. */
  experts: z.string().min(1).default("batch-union"),
  trainable: z.enum(["experts", "all", "router"]).default("experts"),
  routingMask: z.boolean().default(false),
  lossOn: z.enum(["assistant", "all"]).default("assistant"),
  routerLoss: z
    .strictObject({
      kind: z.enum(["none", "forward", "reverse", "symmetric"]).default("none"),
      weight: z.number().min(0).default(0.1),
      layers: z.enum(["all", "masked"]).default("all"),
    })
    .prefault({}),
  lr: z.number().gt(0, "must be > 0").default(5e-5),
  warmupRatio: z.number().min(0).max(1).default(0.1),
  weightDecay: z.number().min(0).default(0),
  gradClip: z.number().gt(0).default(1.0),
  epochs: z.number().int().min(1, "must be at least 1").default(3),
  shuffle: z.boolean().default(true),
  seed: z.number().int().min(0).default(42),
  /** Split each batch into micro-batches of this many samples (gradients accumulate: still one step). */
  microBatch: z.number().int().min(1).optional(),
  gradientCheckpointing: z.boolean().default(false),
  checkpointEvery: z.number().int().min(1).default(50),
});
export type TrainSettings = z.input<typeof TrainSettings>;
type Settings = z.infer<typeof TrainSettings>;

/** Processes training one model together (`--nproc`): FSDP2, each with a share of every batch. */
export const Nproc = z.number().int().min(1).default(1);

export interface TrainOptions {
  /** Output folder; default RUN/train. */
  out?: string;
  /** The engine's options; with nproc > 1 the recipe starts the engine itself. */
  engine?: EngineHandle;
  nproc?: number;
  signal?: AbortSignal;
}

export interface TrainSummary {
  out: string;
  complete: boolean;
  steps: number;
  totalSteps: number;
  trainedExperts: number;
  totalExperts: number;
  finalLoss?: number;
  resumed: boolean;
}

/** What to train: the batches in analysis order, the trained set, and the model it was measured on. */
interface Plan {
  batches: TrainBatch[];
  trained: ExpertRef[];
  model: z.infer<typeof ModelConfig>;
  analysed?: ModelInfo;
  describe: Record<string, unknown>;
  /** Where the training sequences come from, for errors naming one of them. */
  file: string;
}

function fromRun(run: string, settings: Settings): Plan {
  checkRunFolder(run);
  const config = readJson(join(run, "config.json"), AnalysisConfig, "give a folder made by steermoe analyze");
  const notDone = "the analysis has not finished; rerun steermoe analyze on it first";
  const experts = readJson(join(run, "experts.json"), ExpertsFile, notDone);
  const rows = readJsonl(join(run, "sft_dataset.jsonl"), SftRow, notDone);

  const source = settings.experts;
  let trained: ExpertRef[];
  let perBatch = new Map<number, ExpertRef[]>(experts.per_batch.map((b) => [b.batch_idx, b.experts]));
  if (source === "batch-union") trained = experts.union;
  else if (source === "global") trained = experts.global;
  else if (source === "random") {
    if (!experts.random)
      throw new UserError(`${run} has no random expert sets: run analyze with --random-experts`);
    trained = experts.random.union;
    perBatch = new Map(experts.random.per_batch.map((b) => [b.batch_idx, b.experts]));
  } else trained = source === "all" ? [] : readExpertsFile(source);

  const byBatch = new Map<number, typeof rows>();
  for (const row of rows) byBatch.set(row.batch_idx, [...(byBatch.get(row.batch_idx) ?? []), row]);
  const batches = [...byBatch.entries()].map(([batchIdx, samples]) => ({
    batchIdx,
    samples,
    // A batch steers its routing into its own unsafe experts, as far as they are being trained.
    allowed: settings.routingMask
      ? layerExperts(
          source === "all"
            ? (perBatch.get(batchIdx) ?? [])
            : intersect(perBatch.get(batchIdx) ?? [], trained),
        )
      : {},
  }));
  return {
    batches,
    trained,
    model: { ...config.settings.model, ...definedOnly(settings.model) },
    analysed: config.model,
    describe: { analysis: { run, batch: config.settings.batch, model: z.encode(ModelInfo, config.model) } },
    file: join(run, "sft_dataset.jsonl"),
  };
}

/** An experts file: a list of {layer, expert}, or an experts.json from analyze (its union). */
function readExpertsFile(path: string): ExpertRef[] {
  if (!existsSync(path)) {
    throw new UserError(`--experts ${path}: not batch-union, global or random, and no such file`);
  }
  const value = readJson(path, z.unknown());
  const list = ExpertList.safeParse(Array.isArray(value) ? value : (value as { union?: unknown }).union);
  if (!list.success)
    throw new UserError(`${path} ${zodProblem(list.error)}: expected a list of {layer, expert}`);
  return list.data;
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The expert sets an analysis run holds (experts.json). */
const ANALYSIS_SETS = ["batch-union", "global", "random"];

function fromData(settings: Settings): Plan {
  if (!settings.model.source) throw new UserError("train --data needs --model");
  if (settings.routerLoss.kind !== "none") {
    throw new UserError("--router-loss needs safe and unsafe labels: train from an analysis run (--run)");
  }
  const conversations = readConversations(settings.data!, true, settings.encoding);
  if (settings.trainable === "experts" && ANALYSIS_SETS.includes(settings.experts)) {
    throw new UserError(
      `--experts ${settings.experts} comes from an analysis run (--run); with --data, give --experts all or a file of {layer, expert}`,
    );
  }
  const trained =
    settings.trainable === "experts" && settings.experts !== "all" ? readExpertsFile(settings.experts) : [];
  const batches: TrainBatch[] = [];
  for (let start = 0; start < conversations.length; start += settings.batchSize) {
    const chunk = conversations.slice(start, start + settings.batchSize);
    batches.push({
      batchIdx: batches.length,
      samples: chunk.map((c) => ({ sample_id: c.id, messages: c.messages })),
      allowed: {},
    });
  }
  const model = ModelConfig.parse(definedOnly(settings.model));
  return { batches, trained, model, describe: { data: settings.data }, file: settings.data! };
}

function sameShape(analysed: ModelInfo | undefined, model: ModelInfo): void {
  if (!analysed) return;
  const want = [analysed.numLayers, analysed.moeLayers.join(","), analysed.numExperts];
  const got = [model.numLayers, model.moeLayers.join(","), model.numExperts];
  if (want.join("|") !== got.join("|")) {
    throw new UserError(
      `${model.source} has ${got[0]} layers, MoE layers [${got[1]}] and ${got[2]} experts, but the analysis ` +
        `measured ${want[0]} layers, [${want[1]}] and ${want[2]}: train the model that was analysed`,
    );
  }
}

/** The engine's label of a sample: its side, or "sample" for a conversation of --data. */
const sampleLabel = (s: TrainSample): string => s.label ?? "sample";

/**
 * What the run, data and experts settings point at: the batches and experts they make, digested in
 * the form train runs have recorded from the start, so that a rerun of any of them resumes.
 */
function planSha256(plan: Plan): string {
  const batches = plan.batches.map(({ batchIdx, samples, allowed }) => ({
    batchIdx,
    sampleIds: samples.map((s) => s.sample_id),
    labels: samples.map(sampleLabel),
    conversations: samples.map((s) => s.messages),
    allowed,
  }));
  return sha256(JSON.stringify([batches, plan.trained]));
}

const checkpointName = (step: number) => `step-${String(step).padStart(6, "0")}.safetensors`;

/** The checkpoints in `dir`, oldest first. */
function checkpointFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => /^step-\d+\.safetensors$/.test(f))
    .sort();
}

/**
 * The step of the newest checkpoint the engine can load. The engine writes each one whole
 * (staging + rename), but a disk can still cut or damage a file afterwards: then the one before it
 * is used, with a note naming the bad one (two are kept for this).
 */
async function resumeStep(engine: Engine, dir: string): Promise<number> {
  const newestFirst = checkpointFiles(dir).reverse();
  for (const [i, file] of newestFirst.entries()) {
    try {
      return (await engine.loadCheckpoint(join(dir, file))).step;
    } catch (err) {
      if (!(err instanceof EngineError)) throw err;
      const previous = newestFirst[i + 1];
      // With no checkpoint left, the trainer may hold part of a bad one: it cannot start over.
      if (!previous)
        throw new UserError(
          `${err.message}; no earlier checkpoint to fall back to: remove ${dir} to train from the start`,
        );
      note(`${err.message}; resuming from the previous checkpoint ${join(dir, previous)}`);
    }
  }
  return 0;
}

export function parseTrainSettings(input: unknown): Settings {
  const parsed = TrainSettings.safeParse(input);
  if (!parsed.success) throw new UserError(`train settings ${zodProblem(parsed.error)}`);
  if (parsed.data.run && parsed.data.data)
    throw new UserError(
      "train takes --run DIR or --data FILE, not both: an analysis run brings its own data",
    );
  if (!parsed.data.run && !parsed.data.data)
    throw new UserError("train needs either --run DIR or --data FILE");
  return parsed.data;
}

export async function train(input: TrainSettings, options: TrainOptions = {}): Promise<TrainSummary> {
  const settings = parseTrainSettings(input);
  const plan = settings.run ? fromRun(settings.run, settings) : fromData(settings);
  const out = options.out ?? (settings.run ? join(settings.run, "train") : undefined);
  if (!out) throw new UserError("train --data needs --out DIR");
  if (plan.batches.length === 0) throw new UserError("there are no batches to train on");
  const nproc = options.nproc ?? 1;
  if (nproc > 1 && settings.trainable !== "experts") {
    throw new UserError(
      `--nproc ${nproc} trains experts only; --trainable ${settings.trainable} runs in one process`,
    );
  }
  if (nproc > 1 && options.engine instanceof Engine) {
    throw new UserError("train with nproc > 1 starts its own engine: pass engine options, not an engine");
  }
  if (settings.trainable === "experts" && settings.experts !== "all" && plan.trained.length === 0) {
    throw new UserError(
      `the expert set '${settings.experts}' is empty: nothing to train; choose another --experts`,
    );
  }

  // An analysis run knows its model's layout: the expert set is checked against it before the
  // model loads (a typo need not wait for the weights); with --data, once the model is loaded.
  const experts = `--experts ${settings.experts}`;
  if (plan.analysed) checkExperts(plan.trained, plan.analysed, experts);

  assertUnlocked(out);
  const handle =
    nproc > 1 ? { ...(options.engine as EngineOptions | undefined), ranks: nproc } : options.engine;
  return withEngine(handle ?? {}, async (engine) => {
    const model = await engine.load(plan.model);
    sameShape(plan.analysed, model);
    if (settings.experts === "all") {
      plan.trained = model.moeLayers.flatMap((layer) =>
        Array.from({ length: model.numExperts }, (_, expert) => ({ layer, expert })),
      );
    } else if (!plan.analysed) checkExperts(plan.trained, model, experts);
    const setup = await engine.trainSetup({
      trainable: settings.trainable,
      experts: layerExperts(plan.trained),
      weightDecay: settings.weightDecay,
      gradClip: settings.gradClip,
      lossOn: settings.lossOn,
      routerLoss: settings.routerLoss,
      gradientCheckpointing: settings.gradientCheckpointing,
      microBatch: settings.microBatch ?? null,
      seed: settings.seed,
      batches: plan.batches.map(({ samples, allowed }) => ({
        conversations: samples.map((s) => s.messages),
        ids: samples.map((s) => s.sample_id),
        labels: samples.map(sampleLabel),
        allowed,
      })),
    });
    // The setup tokenized every sequence, once; each must fit the context, which is checked
    // before the output folder is touched.
    fitPrompts(
      model,
      plan.batches.flatMap((b) =>
        b.samples.map(({ sample_id, messages }) => ({
          messages,
          where: `${plan.file} record id ${sample_id} field messages`,
        })),
      ),
      setup.lengths,
      { maxNewTokens: 0 },
    );
    const describe = { model, engine: engine.info, ...plan.describe };
    const { resumed, release } = openRun(
      out,
      "train",
      { ...settings, planSha256: planSha256(plan) },
      describe,
      "checkpoints",
      [
        { setting: "run", by: "planSha256" },
        { setting: "data", by: "planSha256" },
        { setting: "experts", by: "planSha256" },
      ],
    );
    try {
      return await runSteps(
        engine,
        plan,
        settings,
        out,
        model,
        setup.trainableParameters,
        resumed,
        options.signal,
      );
    } finally {
      release();
    }
  });
}

/** A loss this many times the first step's, or weights this many times larger after one step,
 * mean training has blown up, not that it is learning. */
const EXPLODED = 10;

/**
 * Stops training whose loss or gradient norm is not finite or has exploded, or whose weights one
 * step blew up (a learning rate far too high): such a step is never saved, so the last checkpoint
 * stays the last good state.
 */
function diverged(
  result: TrainStepResult,
  firstLoss: number | undefined,
  step: number,
  lr: number,
  lastCheckpoint: string | undefined,
): asserts result is TrainStepResult & { [K in "loss" | "routerLoss" | "gradNorm"]: number } {
  const why =
    result.loss === null || result.routerLoss === null
      ? "the loss is not finite"
      : result.gradNorm === null
        ? "the gradient norm is not finite"
        : result.weightGrowth === null
          ? "the trained weights are not finite after the step"
          : result.weightGrowth > EXPLODED
            ? `one step made the trained weights ${result.weightGrowth.toExponential(1)} times larger`
            : result.loss > EXPLODED * (firstLoss ?? result.loss)
              ? `the loss exploded from ${firstLoss!.toFixed(3)} to ${result.loss.toExponential(2)}`
              : undefined;
  if (!why) return;
  const kept = lastCheckpoint ? `; the last good checkpoint ${lastCheckpoint} is kept` : "";
  throw new UserError(
    `training diverged at step ${step} (lr ${lr.toExponential(2)}): ${why}; lower --lr (or --grad-clip)${kept}`,
  );
}

async function runSteps(
  engine: Engine,
  plan: Plan,
  settings: Settings,
  out: string,
  model: ModelInfo,
  trainableParameters: number,
  resumed: boolean,
  signal: AbortSignal | undefined,
): Promise<TrainSummary> {
  const perEpoch = plan.batches.length;
  const total = perEpoch * settings.epochs;
  const checkpoints = join(out, "checkpoints");
  const logPath = join(out, "train_log.jsonl");
  let step = resumed ? await resumeStep(engine, checkpoints) : 0;
  // Steps after the checkpoint are redone, so their log rows go, once; new rows are appended.
  const log = readJsonlLog(logPath, TrainLogRow).filter((row) => row.step < step);
  writeJsonlAtomic(logPath, log);

  const save = async () => {
    await engine.saveCheckpoint(join(checkpoints, checkpointName(step)), {
      step,
      epoch: Math.floor(step / perEpoch),
    });
    // The newest two stay: the previous one is the fallback should the newest be damaged later.
    const keep = new Set(checkpointFiles(checkpoints).slice(-2));
    for (const file of readdirSync(checkpoints)) {
      if (!keep.has(file)) rmSync(join(checkpoints, file), { force: true });
    }
  };

  const bar = progress("train", total, "steps", step);
  const started = Date.now();
  let tokens = 0;
  let optimizerBytes = 0;
  while (step < total && !signal?.aborted) {
    const epoch = Math.floor(step / perEpoch);
    const index = epochOrder(perEpoch, epoch, settings.seed, settings.shuffle)[step % perEpoch]!;
    const batch = plan.batches[index]!;
    const lr = learningRate(step, total, settings.lr, settings.warmupRatio);
    const result = await engine.trainStep({ batch: index, lr });
    diverged(result, log[0]?.loss ?? undefined, step, lr, checkpointFiles(checkpoints).at(-1));
    optimizerBytes = result.optimizerStateBytes;
    const row: TrainLogRow = {
      step,
      epoch,
      batch_idx: batch.batchIdx,
      sample_ids: batch.samples.map((s) => s.sample_id),
      loss: result.loss,
      router_loss: result.routerLoss,
      lr,
      grad_norm: result.gradNorm,
      tokens: result.tokens,
      seconds: result.seconds,
    };
    log.push(row);
    appendJsonl(logPath, row);
    step++;
    tokens += result.tokens;
    const rate = tokens / ((Date.now() - started) / 1000);
    bar.update(step, `loss ${result.loss.toFixed(4)} · lr ${lr.toExponential(2)} · ${rate.toFixed(0)} tok/s`);
    if (step % settings.checkpointEvery === 0 || step === total || signal?.aborted) await save();
  }
  bar.finish();

  const summary = {
    out,
    steps: step,
    totalSteps: total,
    trainedExperts: settings.trainable === "experts" ? plan.trained.length : 0,
    totalExperts: model.moeLayers.length * model.numExperts,
    finalLoss: log.at(-1)?.loss ?? undefined,
    resumed,
  };
  if (step < total) return { ...summary, complete: false };
  await writeOutputs(engine, plan, settings, out, model, { trainableParameters, optimizerBytes, log });
  return { ...summary, complete: true };
}

async function writeOutputs(
  engine: Engine,
  plan: Plan,
  settings: Settings,
  out: string,
  model: ModelInfo,
  stats: { trainableParameters: number; optimizerBytes: number; log: TrainLogRow[] },
): Promise<void> {
  await engine.saveModel(join(out, "final_model"));
  const shape = routingShape(model);
  // Baselines (--trainable all|router) train no expert set; their metadata says so.
  const trained = settings.trainable === "experts" ? labelled(plan.trained) : [];
  writeNpy(join(out, "expert_mask.npy"), expertMask(trained, shape), [model.numLayers, model.numExperts]);
  const masks = plan.batches.map((b) =>
    labelled(
      Object.entries(b.allowed).flatMap(([l, es]) => es.map((e) => ({ layer: Number(l), expert: e }))),
    ),
  );
  // Not analyze's batch_expert_masks.npy (each batch's unsafe experts): the experts each batch's
  // tokens were allowed to reach under --routing-mask, all zero without it.
  writeNpy(join(out, "batch_routing_masks.npy"), stackedMasks(masks, shape), [
    plan.batches.length,
    model.numLayers,
    model.numExperts,
  ]);
  if (settings.trainable === "experts") {
    // One description of the delta: the safetensors header carries it, expert_delta.json repeats
    // it for readers who do not open safetensors.
    const about: DeltaMetadata = {
      format: DELTA_FORMAT,
      base_model: model.source,
      model_type: model.modelType,
    };
    const tensors = await engine.saveDelta(
      join(out, "expert_delta.safetensors"),
      layerExperts(plan.trained),
      about,
    );
    writeJsonAtomic(join(out, "expert_delta.json"), {
      ...about,
      experts: trained.map(({ layer, expert, label }) => ({ layer, expert, label })),
      tensors,
      apply: `steermoe apply-delta --base ${model.source} --delta ${join(out, "expert_delta.safetensors")} --out DIR`,
    } satisfies ExpertDeltaFile);
  }
  const metadata: TrainingMetadata = {
    model: model.source,
    model_type: model.modelType,
    ...plan.describe,
    batches: plan.batches.length,
    batch_sizes: plan.batches.map((b) => b.samples.length),
    steps: stats.log.length,
    epochs: settings.epochs,
    trainable: settings.trainable,
    trainable_parameters: stats.trainableParameters,
    optimizer_state_bytes: stats.optimizerBytes,
    trained_experts: trained.map(({ layer, expert }) => ({
      layer,
      expert,
      label: expertLabel(layer, expert),
    })),
    unique_trained_experts: trained.length,
    total_experts: model.moeLayers.length * model.numExperts,
    per_batch_mask_counts: plan.batches.map((b) => ({
      batch_idx: b.batchIdx,
      experts: Object.values(b.allowed).reduce((n, es) => n + es.length, 0),
    })),
    settings,
    final_loss: stats.log.at(-1)?.loss ?? null,
    seconds: stats.log.reduce((s, r) => s + r.seconds, 0),
  };
  writeJsonAtomic(join(out, "training_metadata.json"), metadata);
}
