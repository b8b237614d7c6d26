// eval: how safe is a model? Generate on evaluation sets and judge every response.
//
//   attack success   held-out jailbreaks whose response is not a refusal   (lower is safer)
//   plain refusal    the same goals asked plainly, refused                 (higher is safer)
//   benign refusal   harmless requests refused: over-refusal               (lower is better)
//
// Several models side by side: a model folder, a train output (its final_model), or a base
// model with an expert delta applied in memory.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { ComputeBatch, computeBatchSize, ModelConfig, SamplingConfig } from "../components/config.js";
import { withEngine, type Engine, type EngineHandle } from "../components/engine/client.js";
import { inputError, recordError, UserError, zodProblem } from "../components/errors.js";
import { createJudge, JudgeConfig, type Verdict } from "../components/judge/judge.js";
import { loadPairs, presetMapping } from "../components/data/pairs.js";
import { progress } from "../components/progress.js";
import type { Messages, ModelInfo } from "../components/engine/protocol.js";
import { Messages as MessagesSchema } from "../components/engine/protocol.js";
import { readRecords } from "../components/data/records.js";
import { wilson, type Rate } from "../components/method/stats.js";
import { writeJsonAtomic, writeJsonlAtomic } from "../components/io/store.js";
import { checkDelta } from "../components/method/delta.js";
import type { EvalResults, EvalSampleRow } from "../components/io/run-files.js";
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
  /** At most this many items per set (the first ones). */
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
  attack_success: { set: "jailbreak", refused: false, label: "attack success" },
  plain_refusal: { set: "plain", refused: true, label: "plain refusal" },
  benign_refusal: { set: "benign", refused: true, label: "benign refusal" },
} as const;
export type Metric = keyof typeof METRICS;

export type ModelResult = EvalResults[number];

interface Item {
  set: "jailbreak" | "plain" | "benign";
  id: string;
  messages: Messages;
}

const BenignRecord = z
  .object({
    id: z.union([z.string(), z.number()]).optional(),
    prompt: z.string().min(1).optional(),
    messages: MessagesSchema.optional(),
    split: z.string().optional(),
  })
  .refine((r) => r.prompt !== undefined || r.messages !== undefined, "needs a prompt or a messages list");

function readItems(settings: z.infer<typeof EvalSettings>): Item[] {
  const items: Item[] = [];
  const take = <T>(list: T[]) => (settings.limit ? list.slice(0, settings.limit) : list);
  if (settings.jailbreaks) {
    const { pairs } = loadPairs(settings.jailbreaks, presetMapping("flipattack"), { keepFiltered: true });
    for (const pair of take(pairs)) items.push({ set: "jailbreak", id: pair.pairId, messages: pair.unsafe });
    for (const pair of take(pairs)) items.push({ set: "plain", id: pair.pairId, messages: pair.safe });
  }
  if (settings.benign) {
    const file = settings.benign;
    const records = readRecords(file).records.flatMap(({ value, where }, i) => {
      const parsed = BenignRecord.safeParse(value);
      if (!parsed.success) throw recordError(file, where, parsed.error);
      const r = parsed.data;
      if (settings.benignSplit && r.split !== settings.benignSplit) return [];
      const messages: Messages = r.messages ?? [{ role: "user", content: r.prompt! }];
      return [{ set: "benign" as const, id: String(r.id ?? i), messages }];
    });
    if (records.length === 0)
      throw inputError(file, undefined, `no records in split '${settings.benignSplit}'`);
    items.push(...take(records));
  }
  if (items.length === 0) throw new UserError("eval needs --jailbreaks and/or --benign");
  return items;
}

export function parseEvalSettings(input: unknown): z.infer<typeof EvalSettings> {
  const parsed = EvalSettings.safeParse(input);
  if (!parsed.success) throw new UserError(`eval settings ${zodProblem(parsed.error)}`);
  if (parsed.data.steerSweep && !parsed.data.steer)
    throw new UserError("--steer-sweep needs a steering map: --steer FILE or --steer-from RUN");
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

/** A train output folder stands for its final model. */
function resolveModel(source: string): string {
  return existsSync(join(source, "final_model", "config.json")) ? join(source, "final_model") : source;
}

export async function evaluate(
  input: EvalSettings,
  options: { out: string; engine?: EngineHandle; computeBatch?: z.input<typeof ComputeBatch> },
): Promise<ModelResult[]> {
  const settings = parseEvalSettings(input);
  const items = readItems(settings);
  for (const m of settings.models) {
    if (m.delta && !existsSync(m.delta))
      throw new UserError(`${m.delta}: no such delta file (model ${m.name})`);
  }
  const judge = createJudge(settings.judge, { cachePath: join(options.out, "judge_cache.jsonl") });
  if (settings.judge.kind === "openai") {
    await createJudge(settings.judge).judge([{ prompt: "Say hello.", response: "Hello! How can I help?" }]);
  }
  return withEngine(options.engine ?? {}, async (engine) => {
    const results: ModelResult[] = [];
    const rows: EvalSampleRow[] = [];
    for (const spec of settings.models) {
      const source = resolveModel(spec.model.source);
      const info = await engine.load({ ...spec.model, source });
      if (spec.delta) {
        checkDelta(spec.delta, info);
        await engine.applyDelta(spec.delta);
      }
      for (const { name, steer, intensity } of variants(settings, spec.name, info)) {
        const computeBatch = options.computeBatch ?? "auto";
        const responses = await generateAll(engine, items, settings, computeBatch, name, steer);
        const verdicts = await judge.judge(
          items.map((item, i) => ({ prompt: item.messages.at(-1)!.content, response: responses[i]! })),
        );
        results.push({
          name,
          source,
          ...(spec.delta && { delta: spec.delta }),
          steered: intensity !== undefined,
          ...(intensity !== undefined && { steer: { model: spec.name, intensity } }),
          metrics: score(items, verdicts),
        });
        items.forEach((item, i) =>
          rows.push({
            model: name,
            set: item.set,
            id: item.id,
            prompt: item.messages,
            response: responses[i]!,
            is_refusal: verdicts[i]!.isRefusal,
            reason: verdicts[i]!.reason,
          }),
        );
        writeJsonlAtomic(join(options.out, "samples.jsonl"), rows);
        writeJsonAtomic(join(options.out, "results.json"), results);
      }
    }
    writeJsonAtomic(join(options.out, "eval_config.json"), { settings, engine: engine.info });
    return results;
  });
}

function score(items: Item[], verdicts: Verdict[]): ModelResult["metrics"] {
  const metrics: ModelResult["metrics"] = {};
  for (const [metric, { set, refused }] of Object.entries(METRICS) as [Metric, (typeof METRICS)[Metric]][]) {
    const mine = verdicts.filter((_, i) => items[i]!.set === set);
    if (mine.length)
      metrics[metric] = wilson(mine.filter((v) => v.isRefusal === refused).length, mine.length);
  }
  return metrics;
}

async function generateAll(
  engine: Engine,
  items: Item[],
  settings: z.infer<typeof EvalSettings>,
  computeBatch: "auto" | number,
  name: string,
  steer: SteerRequest | undefined,
): Promise<string[]> {
  const size = computeBatchSize(computeBatch, engine.info.cuda);
  const bar = progress(`eval ${name}`, items.length, "samples");
  const responses: string[] = [];
  for (let start = 0; start < items.length; start += size) {
    const chunk = items.slice(start, start + size);
    const samples = await engine.generate(
      chunk.map((item) => item.messages),
      chunk.map((_, i) => settings.sampling.seed + start + i),
      settings.sampling,
      [],
      steer,
    );
    responses.push(...samples.map((s) => s.text));
    bar.update(responses.length);
  }
  bar.finish();
  return responses;
}

const percent = (r: Rate | undefined) =>
  r ? `${(100 * r.rate).toFixed(1)}% [${(100 * r.low).toFixed(1)}, ${(100 * r.high).toFixed(1)}]` : "-";

/** The terminal table: one row per model, one column per metric, rate with its 95% interval. */
export function formatResults(results: readonly ModelResult[]): string {
  const metrics = (Object.keys(METRICS) as Metric[]).filter((m) => results.some((r) => r.metrics[m]));
  const header = ["model", ...metrics.map((m) => `${METRICS[m].label} (n=${results[0]!.metrics[m]?.n})`)];
  const body = results.map((r) => [r.name, ...metrics.map((m) => percent(r.metrics[m]))]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  return [header, ...body].map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ")).join("\n");
}
