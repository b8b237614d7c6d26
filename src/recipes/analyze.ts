// analyze: find the experts that fire more when the model is jailbroken.
//
//   pairs → mixed batches → generate with routing recorded → judge (quality control)
//         → risk difference per batch → aggregate → unsafe experts → batch-structured SFT data
//
// Generation is the slow part: it lands batch by batch (samples/ and routing/), so a stopped or
// crashed run resumes at the first unfinished batch. Everything after it is recomputed from those
// files when the last batch is in.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { batchShape, dropPairs, planBatches, type MixedBatch } from "../components/data/batching.js";
import {
  ComputeBatch,
  computeBatchSize,
  ModelConfig,
  sampleSeed,
  SamplingConfig,
} from "../components/config.js";
import type { PoolOptions } from "../components/engine/pool.js";
import { withGenerator, type GeneratorHandle } from "../components/engine/backends.js";
import { inCalls, withStatus, type Generator } from "../components/engine/generator.js";
import { UserError, zodProblem } from "../components/errors.js";
import { createJudge, JudgeConfig, probeJudge, type Judge } from "../components/judge/judge.js";
import { DatasetMappingSchema, loadPairs, presetMapping, type Pair } from "../components/data/pairs.js";
import { note, progress } from "../components/progress.js";
import type { ModelInfo } from "../components/domain.js";
import {
  computeRiskDiff,
  randomExperts,
  selectExperts,
  type ExpertSet,
  type RoutedSample,
  routingShape,
} from "../components/method/riskdiff.js";
import { readRoutingShard, type RoutingTrace } from "../components/io/routing.js";
import { checkRunFolder, openRun } from "../components/io/run.js";
import { assertUnlocked } from "../components/io/lock.js";
import { planGeneration } from "../components/engine/prompt-limits.js";
import { qualityControl, samplePasses } from "../components/method/quality-control.js";
import { buildSftDataset, RefusalSource } from "../components/data/sft.js";
import { readJsonl, TextEncoding, writeJsonAtomic, writeJsonlAtomic } from "../components/io/store.js";
import { riskDiffRanking, writeNpy, writeRiskDiffTables } from "../components/io/tables.js";
import {
  SampleRow,
  type AnalyzedSampleRow,
  type BatchesFile,
  type ExpertsFile,
} from "../components/io/run-files.js";

export const AnalyzeSettings = z.strictObject({
  model: ModelConfig,
  data: z.strictObject({
    file: z.string().min(1),
    /** A named mapping (flipattack) or an explicit one; flipattack when neither is given. */
    preset: z.string().default("flipattack"),
    mapping: DatasetMappingSchema.optional(),
    /** Keep records the mapping's filter would drop (for flipattack: failed jailbreaks). */
    keepFiltered: z.boolean().default(false),
    /** How the file's bytes are text (docs/method.md: data files): invalid UTF-8 is refused unless asked. */
    encoding: TextEncoding.default("utf8"),
    /** Leave out pairs whose prompts are over the length limit (listed in batches.json) instead of refusing. */
    skipLong: z.boolean().default(false),
  }),
  batch: z
    .strictObject({
      size: z.number().int().min(2).default(16),
      safeRatio: z.number().gt(0).lt(1).default(0.5),
      /** Shuffle pairs before batching; dataset order without it. */
      shuffleSeed: z.number().int().min(0).optional(),
    })
    .prefault({}),
  sampling: SamplingConfig.prefault({}),
  /** Keep a pair only if its plain request was refused and its jailbreak was not. */
  qc: z.boolean().default(true),
  judge: JudgeConfig.prefault({ kind: "keyword" }),
  /** Which tokens the risk difference counts. */
  tokens: z.enum(["generation", "prompt", "all"]).default("generation"),
  selection: z
    .strictObject({
      batchThreshold: z.number().default(0),
      batchTopK: z.number().int().min(1).default(50),
      globalThreshold: z.number().default(0.05),
      globalTopK: z.number().int().min(1).default(50),
      /** Ablation: also draw each batch's experts at random, as many as its real set (seed + batch_idx). */
      randomExperts: z.boolean().default(false),
    })
    .prefault({}),
  refusal: RefusalSource.prefault({}),
});
export type AnalyzeSettings = z.input<typeof AnalyzeSettings>;

export interface AnalyzeOptions {
  run: string;
  engine?: GeneratorHandle;
  /** Engines of its own (--workers, --devices); the run folder is the same whatever they are. */
  pool?: PoolOptions;
  computeBatch?: z.input<typeof ComputeBatch>;
  /** Memory budget in bytes for one compute batch (default: half the free memory). */
  maxMemory?: number;
  signal?: AbortSignal;
}

export interface AnalyzeSummary {
  run: string;
  complete: boolean;
  batchesDone: number;
  batches: number;
  keptBatches?: number;
  keptPairs?: number;
  pairs: number;
  /** Pairs left out by --skip-long. */
  skippedLong: number;
  globalExperts?: ExpertSet;
  unionExperts?: number;
  resumed: boolean;
}

const batchName = (b: number) => `batch-${String(b).padStart(5, "0")}`;
const samplesFile = (run: string, b: number) => join(run, "samples", `${batchName(b)}.jsonl`);
const routingFile = (b: number) => `routing/${batchName(b)}.safetensors`;

export function parseAnalyzeSettings(input: unknown): z.infer<typeof AnalyzeSettings> {
  const parsed = AnalyzeSettings.safeParse(input);
  if (!parsed.success) throw new UserError(`analyze settings ${zodProblem(parsed.error)}`);
  return parsed.data;
}

export async function analyze(input: AnalyzeSettings, options: AnalyzeOptions): Promise<AnalyzeSummary> {
  const settings = parseAnalyzeSettings(input);
  checkRunFolder(options.run);
  const mapping = settings.data.mapping ?? presetMapping(settings.data.preset);
  const dataset = loadPairs(settings.data.file, mapping, {
    keepFiltered: settings.data.keepFiltered,
    encoding: settings.data.encoding,
  });
  const batching = {
    batchSize: settings.batch.size,
    safeRatio: settings.batch.safeRatio,
    seed: settings.batch.shuffleSeed,
  };
  // Checked before the engine starts; the plan itself waits for the length check (--skip-long).
  batchShape(batching);
  const run = options.run;
  assertUnlocked(run);
  const judge = settings.qc
    ? createJudge(settings.judge, { cachePath: join(run, "judge_cache.jsonl") })
    : undefined;
  if (judge) await probeJudge(settings.judge);

  return withGenerator(
    options.engine ?? {},
    async (generator) => {
      const model = await generator.load(settings.model);
      // Everything that can fail on the inputs is checked before the run folder is touched.
      const where = (pairId: string, field: string) =>
        `${settings.data.file} record id ${pairId} field ${field}`;
      // Whole analysis batches per engine call, as many as fit the compute batch and the memory
      // budget: the engine sees large batches, while every result still lands in its own analysis batch.
      const { keep, fit } = await planGeneration(
        generator,
        model,
        dataset.pairs.flatMap((p) => [
          { messages: p.safe, where: where(p.pairId, mapping.safe.field), id: `${p.pairId}:safe` },
          { messages: p.unsafe, where: where(p.pairId, mapping.unsafe.field), id: `${p.pairId}:unsafe` },
        ]),
        { ...settings.sampling, skipLong: settings.data.skipLong },
        {
          requested: computeBatchSize(options.computeBatch ?? "auto"),
          maxMemory: options.maxMemory,
          unit: settings.batch.size,
        },
      );
      const fits = (i: number) => keep[2 * i]! && keep[2 * i + 1]!;
      const pairs = dataset.pairs.filter((_, i) => fits(i));
      const skippedLong = dataset.pairs.filter((_, i) => !fits(i)).map((p) => p.pairId);
      if (pairs.length === 0) {
        throw new UserError(
          `${settings.data.file}: every record is over the length limit; nothing to analyze`,
        );
      }
      const plan = planBatches(pairs, batching);
      const perChunk = Math.floor(fit.size / plan.batchSize);
      const skipped = settings.data.skipLong ? { skipped_long: skippedLong } : {};
      const { resumed, release } = openRun(
        run,
        "analyze",
        { ...settings, datasetSha256: dataset.datasetSha256 },
        {
          model,
          ...generator.description,
          dataset: { pairs: pairs.length, records: dataset.recordCount },
        },
        "samples",
        [{ setting: "data.file", by: "datasetSha256" }],
      );
      try {
        writeJsonAtomic(join(run, "batches.json"), {
          batch_size: plan.batchSize,
          safe_ratio: plan.safeRatio,
          batches: plan.batches.map(batchOutline),
          ...skipped,
        } satisfies BatchesFile);
        const pass = { generator, model, settings, judge, pairs, run, resumed, skipped };
        return await runBatches(pass, plan.batches, { perChunk, note: fit.note }, options.signal);
      } finally {
        release();
      }
    },
    options.pool,
  );
}

/**
 * Whether a batch's files are all there and readable. The samples file marks a batch as done; when
 * it is there but it or the routing shard is damaged (deleted, cut short), the batch is generated
 * again, with a note naming the file.
 */
function batchDone(run: string, batch: MixedBatch): boolean {
  if (!existsSync(samplesFile(run, batch.batchIdx))) return false;
  try {
    const rows = readJsonl(samplesFile(run, batch.batchIdx), SampleRow);
    const traces = readRoutingShard(join(run, routingFile(batch.batchIdx))).traces;
    const ids = batch.samples.map((s) => s.sample_id).join("\n");
    if (rows.map((r) => r.sample_id).join("\n") !== ids)
      throw new UserError(`${samplesFile(run, batch.batchIdx)} does not hold the batch's samples`);
    if (traces.map((t) => t.sampleId).join("\n") !== ids)
      throw new UserError(`${join(run, routingFile(batch.batchIdx))} does not hold the batch's samples`);
    return true;
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    note(`${err.message}; generating batch ${batch.batchIdx} again`);
    return false;
  }
}

/** An analysis once its inputs are checked and its run folder is open. */
interface Pass {
  generator: Generator;
  model: ModelInfo;
  settings: z.infer<typeof AnalyzeSettings>;
  judge: Judge | undefined;
  pairs: Pair[];
  run: string;
  resumed: boolean;
  /** batches.json's list of pairs left out by --skip-long, when it was given. */
  skipped: { skipped_long?: string[] };
}

/** Generate every batch not yet done (or damaged), `perChunk` analysis batches per engine call,
 * as many calls in flight as the generator takes, committed in order; once all are done,
 * everything computed from them. */
async function runBatches(
  pass: Pass,
  planned: MixedBatch[],
  compute: { perChunk: number; note: string | undefined },
  signal: AbortSignal | undefined,
): Promise<AnalyzeSummary> {
  const { generator, model, settings, judge, pairs, run, resumed, skipped } = pass;
  const todo = planned.filter((b) => !batchDone(run, b));
  const bar = progress("analyze", planned.length, "batches", planned.length - todo.length);
  const started = Date.now();
  let tokens = 0;
  let done = planned.length - todo.length;
  // The plain request behind each pair: what StrongREJECT and HarmBench judge a jailbreak against.
  const goals = new Map(pairs.map((p) => [p.pairId, p.safe.at(-1)!.content]));
  await inCalls(
    generator,
    todo,
    compute.perChunk,
    (chunk) => generateBatches(generator, chunk, settings, judge, goals, run),
    (chunk, _start, rows) => {
      tokens += commitBatches(chunk, rows, run);
      done += chunk.length;
      const rate = `${(tokens / ((Date.now() - started) / 1000)).toFixed(1)} tok/s`;
      bar.update(done, withStatus(generator, compute.note ? `${rate} · ${compute.note}` : rate));
    },
    signal,
  );
  bar.finish();
  const batchesDone = planned.filter((b) => existsSync(samplesFile(run, b.batchIdx))).length;
  const summary = {
    run,
    batchesDone,
    batches: planned.length,
    pairs: pairs.length,
    skippedLong: skipped.skipped_long?.length ?? 0,
    resumed,
  };
  if (batchesDone < planned.length) return { ...summary, complete: false };
  return { ...summary, complete: true, ...(await finish(run, planned, settings, model, skipped)) };
}

function batchOutline(batch: MixedBatch) {
  return { batch_idx: batch.batchIdx, sample_ids: batch.samples.map((s) => s.sample_id) };
}

/** Generate and judge a chunk of analysis batches: the rows of each batch, routing already on disk. */
async function generateBatches(
  generator: Generator,
  batches: MixedBatch[],
  settings: z.infer<typeof AnalyzeSettings>,
  judge: Judge | undefined,
  goals: ReadonlyMap<string, string>,
  run: string,
): Promise<SampleRow[][]> {
  const samples = batches.flatMap((b) => b.samples);
  const seeds = samples.map((s) =>
    sampleSeed(settings.sampling, s.batch_idx * settings.batch.size + s.in_batch_idx),
  );
  // Each analysis batch's routing goes to its own shard, written by the engine.
  const shards = batches.map((b) => ({
    path: join(run, routingFile(b.batchIdx)),
    sampleIds: b.samples.map((s) => s.sample_id),
  }));
  const results = await generator.generate({
    conversations: samples.map((s) => s.messages),
    seeds,
    sampling: settings.sampling,
    shards,
    ids: samples.map((s) => s.sample_id),
  });
  const verdicts = judge
    ? await judge.judge(
        samples.map((s, i) => ({
          prompt: s.messages.at(-1)!.content,
          response: results[i]!.text,
          goal: goals.get(s.pair_id)!,
        })),
      )
    : undefined;
  let at = 0;
  return batches.map((batch) =>
    batch.samples.map((s, index): SampleRow => {
      const result = results[at]!;
      const verdict = verdicts?.[at] ?? null;
      const seed = seeds[at]!;
      at++;
      return {
        ...s,
        seed,
        prompt_token_ids: Array.from(result.promptIds.data as Int32Array),
        generated_token_ids: Array.from(result.generatedIds.data as Int32Array),
        text: result.text,
        finish_reason: result.finishReason,
        verdict,
        qc_pass: samplePasses({ label: s.label, verdict }),
        routing: { shard: routingFile(batch.batchIdx), index },
      };
    }),
  );
}

/** Store a chunk's samples files; returns the response tokens they hold. */
function commitBatches(batches: MixedBatch[], rows: SampleRow[][], run: string): number {
  batches.forEach((batch, i) => {
    // The samples file is written last: its presence is what marks the batch as done.
    writeJsonlAtomic(samplesFile(run, batch.batchIdx), rows[i]!);
  });
  return rows.flat().reduce((sum, row) => sum + row.generated_token_ids.length, 0);
}

function routedPart(trace: RoutingTrace, tokens: "generation" | "prompt" | "all"): Uint8Array | Uint16Array {
  if (tokens !== "all") return trace[tokens];
  const all = new (trace.prompt.constructor as Uint8ArrayConstructor)(
    trace.prompt.length + trace.generation.length,
  );
  all.set(trace.prompt);
  all.set(trace.generation, trace.prompt.length);
  return all;
}

/** Everything after generation: QC, risk difference, selection, SFT data, the assembled files. */
async function finish(
  run: string,
  planned: MixedBatch[],
  settings: z.infer<typeof AnalyzeSettings>,
  model: ModelInfo,
  skippedLong: { skipped_long?: string[] },
) {
  const rows = planned.flatMap((b) => readJsonl(samplesFile(run, b.batchIdx), SampleRow));
  const dropped = qualityControl(rows, { qc: settings.qc, selfRefusal: settings.refusal.source === "self" });
  const { batches: kept, skippedBatchIdx } = dropPairs(planned, new Set(dropped.keys()));
  const keptIds = new Set(kept.flatMap((b) => b.samples.map((s) => s.sample_id)));
  const skipped = new Set(skippedBatchIdx);

  const shape = routingShape(model);
  const labels = new Map(rows.map((r) => [r.sample_id, r.label]));
  const routed: RoutedSample[][] = planned.map((batch) => {
    if (skipped.has(batch.batchIdx)) return [];
    return readRoutingShard(join(run, routingFile(batch.batchIdx)))
      .traces.filter((t) => keptIds.has(t.sampleId))
      .map((t) => ({ label: labels.get(t.sampleId)!, expertIds: routedPart(t, settings.tokens) }));
  });
  const riskDiff = computeRiskDiff(routed, shape);
  const selection = selectExperts(riskDiff, settings.selection);
  const random = settings.selection.randomExperts
    ? randomExperts(riskDiff, {
        seed: settings.sampling.seed,
        // The control draws as many experts per batch as the batch's real set holds.
        topK: selection.perBatch.map((set) => set.length),
      })
    : undefined;

  writeRiskDiffTables(run, riskDiff);
  const dims = [planned.length, model.numLayers, model.numExperts];
  writeNpy(join(run, "batch_expert_masks.npy"), selection.batchMasks, dims);
  writeNpy(join(run, "expert_mask.npy"), selection.globalMask, dims.slice(1));
  writeNpy(join(run, "union_expert_mask.npy"), selection.unionMask, dims.slice(1));
  if (random) writeNpy(join(run, "random_batch_expert_masks.npy"), random.batchMasks, dims);
  const perBatch = (sets: ExpertSet[]) => sets.map((experts, b) => ({ batch_idx: b, experts }));
  const experts: ExpertsFile = {
    num_layers: model.numLayers,
    moe_layers: model.moeLayers,
    num_experts: model.numExperts,
    selection: settings.selection,
    global: selection.global,
    union: selection.union,
    per_batch: perBatch(selection.perBatch),
    ...(random && { random: { union: random.union, per_batch: perBatch(random.perBatch) } }),
    ranking: riskDiffRanking(riskDiff),
  };
  writeJsonAtomic(join(run, "experts.json"), experts);

  const bySample = new Map(rows.map((r) => [r.sample_id, r]));
  const safeByPair = new Map(rows.filter((r) => r.label === "safe").map((r) => [r.pair_id, r]));
  const sft = await buildSftDataset(
    kept.map((b) => b.samples.map((s) => bySample.get(s.sample_id)!)),
    safeByPair,
    settings.refusal,
    join(run, "judge_cache.jsonl"),
  );
  writeJsonlAtomic(join(run, "sft_dataset.jsonl"), sft);

  const keptBatchIdx = new Set(kept.map((b) => b.batchIdx));
  const analyzed = rows.map((r): AnalyzedSampleRow => ({
    ...r,
    kept: keptIds.has(r.sample_id),
    why: keptIds.has(r.sample_id)
      ? null
      : (dropped.get(r.pair_id) ?? (keptBatchIdx.has(r.batch_idx) ? null : "batch skipped: no pair left")),
  }));
  writeJsonlAtomic(join(run, "samples.jsonl"), analyzed);
  const batches: BatchesFile = {
    batch_size: settings.batch.size,
    safe_ratio: settings.batch.safeRatio,
    batches: planned.map((b) => ({
      ...batchOutline(b),
      kept: keptBatchIdx.has(b.batchIdx),
      kept_sample_ids: b.samples.filter((s) => keptIds.has(s.sample_id)).map((s) => s.sample_id),
    })),
    ...skippedLong,
  };
  writeJsonAtomic(join(run, "batches.json"), batches);
  return {
    keptBatches: kept.length,
    keptPairs: new Set(kept.flatMap((b) => b.samples.map((s) => s.pair_id))).size,
    globalExperts: selection.global,
    unionExperts: selection.union.length,
  };
}
