// eval: how safe is a model? Generate on evaluation sets and judge every response.
//
//   attack success   held-out jailbreaks whose response is not a refusal   (lower is safer)
//   plain refusal    the same goals asked plainly, refused                 (higher is safer)
//   benign refusal   harmless requests refused: over-refusal               (lower is better)
//
//   on a benchmark (--benchmark), per benchmark and per category:
//   attack success   harmful prompts asked plainly whose response is not a refusal
//   refusal          the same prompts, refused
//   over-refusal     benign prompts (XSTest's safe ones) refused
//
// Several models side by side: a model folder, a train output (its final_model), or a base
// model with an expert delta applied in memory.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
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
import { planGeneration, type ComputeFit } from "../components/engine/prompt-limits.js";
import { inputError, recordError, UserError, zodProblem } from "../components/errors.js";
import {
  createJudge,
  JudgeConfig,
  probeJudge,
  type Judge,
  type JudgeItem,
  type Verdict,
} from "../components/judge/judge.js";
import { loadPairs, presetMapping } from "../components/data/pairs.js";
import {
  benchmarkLabel,
  BenchmarkSpec,
  loadBenchmark,
  type BenchmarkItem,
} from "../components/data/benchmarks.js";
import { progress } from "../components/progress.js";
import type { Messages, ModelInfo } from "../components/domain.js";
import { Messages as MessagesSchema } from "../components/domain.js";
import { readRecords, uniqueIds } from "../components/data/records.js";
import { wilson, type Rate } from "../components/method/stats.js";
import { TextEncoding, writeJsonAtomic, writeJsonlAtomic } from "../components/io/store.js";
import { storableSettings } from "../components/io/secrets.js";
import { checkWritable } from "../components/io/run.js";
import { checkDeltaFits, readDelta, type DeltaHeader } from "../components/method/delta.js";
import {
  EvalSet,
  type EvalConfig,
  type EvalResults,
  type EvalSampleRow,
} from "../components/io/run-files.js";
import { Steering, steerRequest, type SteerRequest } from "../components/method/steering.js";

export const EvalModel = z.strictObject({
  name: z.string().min(1),
  model: ModelConfig,
  /** expert_delta.safetensors to apply to the model before generating. */
  delta: z.string().min(1).optional(),
});

export const EvalSettings = z.strictObject({
  models: z.array(EvalModel).min(1),
  /** FlipAttack-format file: its jailbreaks (attack success) and its plain goals (plain refusal). */
  jailbreaks: z.string().min(1).optional(),
  /** Harmless requests: {id?, prompt} or {id?, messages}; `benignSplit` keeps one split only. */
  benign: z.string().min(1).optional(),
  benignSplit: z.string().optional(),
  /** How the data files' bytes are text (docs/method.md: data files): invalid UTF-8 is refused unless asked. */
  encoding: TextEncoding.default("utf8"),
  /** Standard benchmarks, each scored on its own and per category. */
  benchmarks: z.array(BenchmarkSpec).optional(),
  /** Folder holding the official benchmark files, for benchmarks given without a file. */
  benchmarkDir: z.string().min(1).optional(),
  /** A system prompt before each benchmark prompt (none by default, as HarmBench asks). */
  benchmarkSystem: z.string().min(1).optional(),
  /** At most this many items per set (the first ones; per benchmark, this many harmful and benign). */
  limit: z.number().int().min(1).optional(),
  sampling: SamplingConfig.extend({
    temperature: z.number().min(0).default(0),
    maxNewTokens: z.number().int().min(1).default(64),
  }).prefault({}),
  judge: JudgeConfig.prefault({ kind: "keyword" }),
  /** Also evaluate every model steered by this map (shown as "<name>+steer"). */
  steer: Steering.optional(),
  /**
   * Intensities: evaluate every model at each multiple of the steering map ("<name>+steer×t").
   * Intensity 0 is the unsteered model itself (bias 0 is bit-identical to no steering), so it is
   * not generated twice.
   */
  steerSweep: z.array(z.number().min(0)).min(1).optional(),
});
export type EvalSettings = z.input<typeof EvalSettings>;

export const METRICS = {
  attack_success: { set: "jailbreak", refused: false, benign: false, label: "attack success" },
  plain_refusal: { set: "plain", refused: true, benign: false, label: "plain refusal" },
  benign_refusal: { set: "benign", refused: true, benign: true, label: "benign refusal" },
} as const;
export type Metric = keyof typeof METRICS;

export const BENCHMARK_METRICS = {
  attack_success: { kind: "harmful", refused: false, benign: false, label: "attack success" },
  refusal: { kind: "harmful", refused: true, benign: false, label: "refusal" },
  over_refusal: { kind: "benign", refused: true, benign: true, label: "over-refusal" },
} as const;
export type BenchmarkMetric = keyof typeof BENCHMARK_METRICS;

export type ModelResult = EvalResults[number];
type BenchmarkResult = NonNullable<ModelResult["benchmarks"]>[string];

interface Item {
  set: "jailbreak" | "plain" | "benign";
  id: string;
  messages: Messages;
  /** The plain request behind a jailbreak: what StrongREJECT and HarmBench judge against. */
  goal?: string;
  benchmark?: BenchmarkItem;
}

const BenignRecord = z
  .object({
    id: z.union([z.string(), z.number()]).optional(),
    prompt: z.string().min(1).optional(),
    messages: MessagesSchema.optional(),
    split: z.string().optional(),
  })
  .refine((r) => r.prompt !== undefined || r.messages !== undefined, "needs a prompt or a messages list");

/** The items to generate on; `skipped`: per benchmark label, the prompts it left out (HarmBench copyright). */
async function readItems(
  settings: z.infer<typeof EvalSettings>,
): Promise<{ items: Item[]; skipped: Map<string, number> }> {
  const items: Item[] = [];
  const take = <T>(list: T[]) => (settings.limit ? list.slice(0, settings.limit) : list);
  if (settings.jailbreaks) {
    const { pairs } = loadPairs(settings.jailbreaks, presetMapping("flipattack"), {
      keepFiltered: true,
      encoding: settings.encoding,
    });
    for (const pair of take(pairs)) {
      const goal = pair.safe.at(-1)!.content;
      items.push({ set: "jailbreak", id: pair.pairId, messages: pair.unsafe, goal });
    }
    for (const pair of take(pairs)) items.push({ set: "plain", id: pair.pairId, messages: pair.safe });
  }
  if (settings.benign) {
    const file = settings.benign;
    const unique = uniqueIds(file);
    const records = readRecords(file, settings.encoding).records.flatMap(({ value, where }, i) => {
      const parsed = BenignRecord.safeParse(value);
      if (!parsed.success) throw recordError(file, where, parsed.error);
      const r = parsed.data;
      if (settings.benignSplit && r.split !== settings.benignSplit) return [];
      const messages: Messages = r.messages ?? [{ role: "user", content: r.prompt! }];
      const id = String(r.id ?? i);
      unique(id, where, "field id");
      return [{ set: "benign" as const, id, messages }];
    });
    if (records.length === 0)
      throw inputError(file, undefined, `no records in split '${settings.benignSplit}'`);
    items.push(...take(records));
  }
  const skipped = new Map<string, number>();
  for (const spec of settings.benchmarks ?? []) {
    const loaded = await loadBenchmark(spec, settings.benchmarkDir, settings.encoding);
    const label = benchmarkLabel(spec);
    if (skipped.has(label)) throw new UserError(`--benchmark ${label} is given twice`);
    skipped.set(label, loaded.skipped);
    for (const kind of ["harmful", "benign"] as const) {
      for (const item of take(loaded.items.filter((i) => i.kind === kind))) {
        items.push({
          set: kind === "harmful" ? "plain" : "benign",
          id: item.id,
          messages: [
            ...(settings.benchmarkSystem
              ? [{ role: "system" as const, content: settings.benchmarkSystem }]
              : []),
            { role: "user", content: item.prompt },
          ],
          benchmark: item,
        });
      }
    }
  }
  if (items.length === 0) throw new UserError("eval needs --jailbreaks, --benign or --benchmark");
  return { items, skipped };
}

export function parseEvalSettings(input: unknown): z.infer<typeof EvalSettings> {
  const parsed = EvalSettings.safeParse(input);
  if (!parsed.success) throw new UserError(`eval settings ${zodProblem(parsed.error)}`);
  if (parsed.data.steerSweep && !parsed.data.steer)
    throw new UserError("--steer-sweep needs a steering map: --steer FILE or --steer-from RUN");
  // Results and samples are keyed by name: two models of one name would pass for one.
  const names = parsed.data.models.map((m) => m.name);
  const twice = names.find((name, i) => names.indexOf(name) !== i);
  if (twice !== undefined)
    throw new UserError(`--model: two models are named ${twice}; name each (--model NAME=PATH)`);
  return parsed.data;
}

interface Variant {
  name: string;
  steer?: SteerRequest;
  intensity?: number;
}

/** The model unsteered, then steered at each intensity (1 without a sweep). */
function variants(settings: z.infer<typeof EvalSettings>, name: string, info: ModelInfo): Variant[] {
  const steering = settings.steer;
  if (!steering) return [{ name }];
  const intensities = settings.steerSweep ?? [1];
  const steered = [...new Set(intensities)]
    .filter((t) => t > 0)
    .sort((a, b) => a - b)
    .map((t) => ({
      name: settings.steerSweep ? `${name}+steer×${t}` : `${name}+steer`,
      steer: steerRequest(steering, info, "steer", t),
      intensity: t,
    }));
  return [{ name }, ...steered];
}

/** What eval writes into its folder (and `report --out` beside them); a rerun may replace them. */
const EVAL_FILES = new Set([
  "results.json",
  "samples.jsonl",
  "eval_config.json",
  "judge_cache.jsonl",
  "report.html",
]);

/** --out is new, empty, or an earlier eval's folder: never an analysis run or a model folder. */
function checkEvalOut(out: string): void {
  checkWritable(join(out, "results.json"));
  if (!existsSync(out)) return;
  if (!statSync(out).isDirectory()) throw new UserError(`${out} is a file; give a folder for --out`);
  const foreign = readdirSync(out).filter((name) => !EVAL_FILES.has(name) && !name.startsWith("."));
  if (foreign.length > 0) {
    throw new UserError(
      `${out} holds files eval does not write (${foreign.slice(0, 3).join(", ")}${foreign.length > 3 ? ", ..." : ""}); choose another --out`,
    );
  }
}

/** A train output folder stands for its final model. */
function resolveModel(source: string): string {
  return existsSync(join(source, "final_model", "config.json")) ? join(source, "final_model") : source;
}

export async function evaluate(
  input: EvalSettings,
  options: {
    out: string;
    engine?: GeneratorHandle;
    pool?: PoolOptions;
    computeBatch?: z.input<typeof ComputeBatch>;
    /** Memory budget in bytes for one compute batch (default: half the free memory). */
    maxMemory?: number;
  },
): Promise<ModelResult[]> {
  const settings = parseEvalSettings(input);
  checkEvalOut(options.out);
  const { items, skipped } = await readItems(settings);
  // Each delta is read before any model loads; whether it fits its model, once that is loaded.
  const deltas = new Map<string, DeltaHeader>();
  for (const m of settings.models) {
    if (!m.delta) continue;
    if (!existsSync(m.delta)) throw new UserError(`${m.delta}: no such delta file (model ${m.name})`);
    deltas.set(m.name, readDelta(m.delta));
  }
  const judge = createJudge(settings.judge, { cachePath: join(options.out, "judge_cache.jsonl") });
  await probeJudge(settings.judge);
  return withGenerator(
    options.engine ?? {},
    async (generator) => {
      // Written with the first results, marked unfinished until the last model is in: a folder
      // whose eval was stopped says so (report warns) instead of passing for a complete comparison.
      const writeConfig = (finished: boolean) =>
        writeJsonAtomic(join(options.out, "eval_config.json"), {
          ...storableSettings(settings),
          ...generator.description,
          finished,
        } satisfies EvalConfig);
      const results: ModelResult[] = [];
      const rows: EvalSampleRow[] = [];
      for (const spec of settings.models) {
        const source = resolveModel(spec.model.source);
        const info = await generator.load({ ...spec.model, source });
        const delta = deltas.get(spec.name);
        if (delta) {
          checkDeltaFits(delta, info);
          await generator.applyDelta(delta.path);
        }
        // Each model has its own tokenizer: every prompt is measured by it before anything is generated.
        const { fit } = await planGeneration(
          generator,
          info,
          items.map((item) => ({
            messages: item.messages,
            where: itemSource(item, settings),
            id: `${item.set} ${item.id}`,
          })),
          settings.sampling,
          { requested: computeBatchSize(options.computeBatch ?? "auto"), maxMemory: options.maxMemory },
        );
        for (const { name, steer, intensity } of variants(settings, spec.name, info)) {
          const responses = await generateAll(generator, items, settings, fit, name, steer);
          const verdicts = await judge.judge(items.map((item, i) => judgeItem(item, responses[i]!)));
          const judged = items.map((item, i) => ({ item, verdict: verdicts[i]! }));
          results.push({
            name,
            source,
            ...(spec.delta && { delta: spec.delta }),
            steered: intensity !== undefined,
            ...(intensity !== undefined && { steer: { model: spec.name, intensity } }),
            ...score(judged, judge),
            ...(skipped.size && { benchmarks: scoreBenchmarks(judged, skipped, judge) }),
          });
          items.forEach((item, i) =>
            rows.push({
              model: name,
              set: item.set,
              ...(item.benchmark && { benchmark: item.benchmark.benchmark }),
              ...(item.benchmark?.category !== undefined && { category: item.benchmark.category }),
              id: item.id,
              prompt: item.messages,
              response: responses[i]!,
              is_refusal: verdicts[i]!.isRefusal,
              reason: verdicts[i]!.reason,
              ...judgeDetails(verdicts[i]!),
            }),
          );
          if (results.length === 1) writeConfig(false);
          writeJsonlAtomic(join(options.out, "samples.jsonl"), rows);
          writeJsonAtomic(join(options.out, "results.json"), results);
        }
      }
      writeConfig(true);
      return results;
    },
    options.pool,
  );
}

interface Judged {
  item: Item;
  verdict: Verdict;
}

/**
 * Each metric over the readable verdicts `counts` assigns it: the share whose verdict is its
 * `refused`. Unreadable verdicts are counted apart, never scored. A harm judge cannot tell a refused
 * harmless request from an answered one, so with it no metric of benign prompts is taken.
 */
function rates<M extends string>(
  metrics: Record<M, { refused: boolean; benign: boolean }>,
  judged: Judged[],
  judge: Judge,
  counts: (metric: M, item: Item) => boolean,
): Partial<Record<M, Rate>> {
  const out: Partial<Record<M, Rate>> = {};
  for (const metric of Object.keys(metrics) as M[]) {
    if (metrics[metric].benign && judge.detects === "harm") continue;
    const mine = judged.filter((j) => !j.verdict.parseFailure && counts(metric, j.item));
    const k = mine.filter((j) => j.verdict.isRefusal === metrics[metric].refused).length;
    if (mine.length) out[metric] = wilson(k, mine.length);
  }
  return out;
}

/** The organism-style sets: jailbreaks, plain goals, benign requests (benchmark prompts apart). */
function score(
  judged: Judged[],
  judge: Judge,
): Pick<ModelResult, "metrics" | "judge_unreadable" | "judge_clipped" | "mean_score"> {
  const own = judged.filter((j) => !j.item.benchmark);
  const meanScore: NonNullable<ModelResult["mean_score"]> = {};
  for (const set of EvalSet.options) {
    const scores = own.flatMap(({ item, verdict }) =>
      item.set === set && !verdict.parseFailure && verdict.score !== undefined ? [verdict.score] : [],
    );
    if (scores.length) meanScore[set] = scores.reduce((a, b) => a + b, 0) / scores.length;
  }
  const unreadable = judged.filter((j) => j.verdict.parseFailure).length;
  const clipped = judged.filter((j) => j.verdict.clipped).length;
  return {
    metrics: rates(METRICS, own, judge, (m, item) => item.set === METRICS[m].set),
    ...(unreadable > 0 && { judge_unreadable: unreadable }),
    ...(clipped > 0 && { judge_clipped: clipped }),
    ...(Object.keys(meanScore).length > 0 && { mean_score: meanScore }),
  };
}

const benchmarkRates = (judged: Judged[], judge: Judge): BenchmarkResult["metrics"] =>
  rates(BENCHMARK_METRICS, judged, judge, (m, item) => item.benchmark?.kind === BENCHMARK_METRICS[m].kind);

/** Per benchmark: its rates over all its prompts, and per category (in first-seen order). */
function scoreBenchmarks(
  judged: Judged[],
  skipped: Map<string, number>,
  judge: Judge,
): Record<string, BenchmarkResult> {
  return Object.fromEntries(
    [...skipped].map(([label, count]) => {
      const mine = judged.filter((j) => j.item.benchmark?.benchmark === label);
      const category = (j: Judged) => j.item.benchmark!.category;
      const categories = [...new Set(mine.map(category).filter((c) => c !== undefined))];
      return [
        label,
        {
          metrics: benchmarkRates(mine, judge),
          categories: Object.fromEntries(
            categories.map((c) => [
              c,
              benchmarkRates(
                mine.filter((j) => category(j) === c),
                judge,
              ),
            ]),
          ),
          skipped: count,
        },
      ];
    }),
  );
}

/** Where an item's prompt came from, for errors naming it. */
function itemSource(item: Item, settings: z.infer<typeof EvalSettings>): string {
  if (item.benchmark) return `benchmark ${item.benchmark.benchmark} item ${item.id}`;
  return `${item.set === "benign" ? settings.benign : settings.jailbreaks} record id ${item.id} (${item.set} prompt)`;
}

/** What the judge sees: the prompt's last turn, and apart, the plain request and its context. */
function judgeItem(item: Item, response: string): JudgeItem {
  const goal = item.goal ?? item.benchmark?.goal;
  const context = item.benchmark?.context;
  return {
    prompt: item.messages.at(-1)!.content,
    response,
    ...(goal !== undefined && { goal }),
    ...(context !== undefined && { context }),
  };
}

/** What a judge adds to a sample row beyond refused or not. */
const judgeDetails = (v: Verdict): Partial<EvalSampleRow> => ({
  ...(v.score !== undefined && { score: v.score }),
  ...(v.categories !== undefined && { categories: v.categories }),
  ...(v.parseFailure && { judge_unreadable: true }),
  ...(v.clipped && { judge_clipped: true }),
});

async function generateAll(
  generator: Generator,
  items: Item[],
  settings: z.infer<typeof EvalSettings>,
  fit: ComputeFit,
  name: string,
  steer: SteerRequest | undefined,
): Promise<string[]> {
  const bar = progress(`eval ${name}`, items.length, "samples");
  const responses: string[] = [];
  await inCalls(
    generator,
    items,
    fit.size,
    (chunk, start) =>
      generator.generate({
        conversations: chunk.map((item) => item.messages),
        seeds: chunk.map((_, i) => sampleSeed(settings.sampling, start + i)),
        sampling: settings.sampling,
        shards: [],
        steer,
        ids: chunk.map((item) => `${item.set} ${item.id}`),
      }),
    (_chunk, _start, samples) => {
      responses.push(...samples.map((s) => s.text));
      bar.update(responses.length, withStatus(generator, fit.note));
    },
  );
  bar.finish();
  return responses;
}

const percent = (r: Rate | undefined) =>
  r ? `${(100 * r.rate).toFixed(1)}% [${(100 * r.low).toFixed(1)}, ${(100 * r.high).toFixed(1)}]` : "-";

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/**
 * The terminal tables: one row per model, one column per metric, rate with its 95% interval (and a
 * judge's own score, its unreadable answers and the responses it saw clipped, when there are any); then per benchmark, its rates
 * over all prompts and per category (n per cell, as categories differ).
 */
export function formatResults(results: readonly ModelResult[]): string {
  const tables: string[] = [];
  const metrics = (Object.keys(METRICS) as Metric[]).filter((m) => results.some((r) => r.metrics[m]));
  if (metrics.length) {
    const header = ["model", ...metrics.map((m) => `${METRICS[m].label} (n=${results[0]!.metrics[m]?.n})`)];
    const body = results.map((r) => [r.name, ...metrics.map((m) => percent(r.metrics[m]))]);
    if (results.some((r) => r.mean_score?.jailbreak !== undefined)) {
      header.push("jailbreak score");
      results.forEach((r, i) => body[i]!.push(r.mean_score?.jailbreak?.toFixed(3) ?? "-"));
    }
    if (results.some((r) => r.judge_unreadable)) {
      header.push("judge unreadable");
      results.forEach((r, i) => body[i]!.push(String(r.judge_unreadable ?? 0)));
    }
    if (results.some((r) => r.judge_clipped)) {
      header.push("clipped for the judge");
      results.forEach((r, i) => body[i]!.push(String(r.judge_clipped ?? 0)));
    }
    tables.push(table([header, ...body]));
  }
  for (const label of Object.keys(results[0]?.benchmarks ?? {})) {
    const of = (r: ModelResult) => r.benchmarks![label]!;
    const columns = (Object.keys(BENCHMARK_METRICS) as BenchmarkMetric[]).filter(
      (m) => of(results[0]!).metrics[m],
    );
    const cell = (rate: Rate | undefined) => (rate ? `${percent(rate)} n=${rate.n}` : "-");
    const rows = [["category", "model", ...columns.map((m) => BENCHMARK_METRICS[m].label)]];
    for (const category of [undefined, ...Object.keys(of(results[0]!).categories)]) {
      for (const r of results) {
        const rates = category === undefined ? of(r).metrics : of(r).categories[category]!;
        rows.push([category ?? "all", r.name, ...columns.map((m) => cell(rates[m]))]);
      }
    }
    const skipped = of(results[0]!).skipped;
    const note = skipped
      ? ` (${skipped} copyright behaviours left out: they need HarmBench's copyright judge; add ,copyright=true to include them)`
      : "";
    tables.push(`${label}${note}\n${table(rows)}`);
  }
  return tables.join("\n\n");
}
