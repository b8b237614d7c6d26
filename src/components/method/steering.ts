// Test-time steering: a bias added to chosen experts' router logits before top-k, with no weight
// changed. A finite bias moves an expert up or down the ranking; -inf switches it off (never
// chosen), +inf forces it on (always in the top-k). How the bias enters the router, weights
// included, is engine/steermoe_engine/control.py's docstring.
import { existsSync } from "node:fs";
import { extname, join } from "node:path";
import { z } from "zod";
import { UserError, zodProblem } from "../errors.js";
import { checkExperts, ExpertRef, type ModelInfo } from "../domain.js";
import { ndarray, type NDArray } from "../engine/frames.js";
import { ExpertsFile, type EvalResults } from "../io/run-files.js";
import { decodeText, readInputFile, readJson } from "../io/store.js";
import { readNpy, readRiskDiffTable } from "../io/tables.js";

/** JSON has no infinity: a bias is a number, or "inf" (switched on) / "-inf" (switched off). */
export const Bias = z.union([z.number(), z.enum(["inf", "-inf"])], {
  error: ({ input }) => {
    const got = typeof input === "number" ? String(input) : JSON.stringify(input);
    const why =
      typeof input === "number"
        ? " (too large for a JSON number)"
        : typeof input === "string" && input.trim() !== "" && !Number.isNaN(Number(input))
          ? " (a number in quotes: write it without them)"
          : "";
    return `expected a number, "inf" (always selected) or "-inf" (never selected), got ${got}${why}`;
  },
});
export type Bias = z.infer<typeof Bias>;
export const SteerBias = z.strictObject({ ...ExpertRef.shape, bias: Bias });
export type SteerBias = z.infer<typeof SteerBias>;

/** The model layout a map was made for: decoder layers × experts (a .npy's shape, a file's header). */
const MapLayout = z.strictObject({ numLayers: z.number().int(), numExperts: z.number().int() });

/** A steering map: the experts with a non-zero bias; every other expert has bias 0. */
export const Steering = z.strictObject({
  biases: z.array(SteerBias),
  /** Where the map came from, in words (recorded with the results). */
  from: z.string().optional(),
  /** The layout it was made for, where its source states one: a model of another is refused. */
  layout: MapLayout.optional(),
});
export type Steering = z.infer<typeof Steering>;

/** The engine's form: float32 [decoder layers, experts], ±Infinity included. */
export type SteerRequest = NDArray;

const biasValue = (b: Bias): number => (b === "inf" ? Infinity : b === "-inf" ? -Infinity : b);
const biasJson = (v: number): Bias => (v === Infinity ? "inf" : v === -Infinity ? "-inf" : v);

/** On/off steering, the ±inf limit of the map: switched-off experts at -inf, forced ones at +inf. */
const OnOffFile = z.strictObject({
  deactivate: z.array(ExpertRef).default([]),
  activate: z.array(ExpertRef).default([]),
});

export const LAYER_INDEXING =
  "layer: decoder-layer index, 0-based (model.model.layers[layer]; dense layers never appear); " +
  "expert: the expert's index in that layer's router logits, 0-based";
export const BIAS_RULE =
  "bias is in router-logit units in every architecture: it is added to the expert's router logit " +
  "before the architecture's own selection (where that ranks sigmoid or softmax scores, with or " +
  "without a score correction, those of the biased logits) and changes only which experts are " +
  "selected; the selected experts' weights follow the architecture's rule on the unbiased logits; " +
  "-inf removes the expert from the router, +inf always selects it";

/** The file `export-steering --format json` writes; `biases` is all a reader needs. */
export const SteeringFile = z.object({
  format: z.literal("steermoe steering map"),
  model: z.string(),
  layer_indexing: z.string(),
  bias_rule: z.string(),
  num_layers: z.number().int(),
  moe_layers: z.array(z.number().int()),
  num_experts: z.number().int(),
  from: z.string(),
  biases: z.array(SteerBias),
});
export type SteeringFile = z.infer<typeof SteeringFile>;

/**
 * A steering file: .npy (float [layers, experts], row = decoder layer), JSON {biases: [{layer,
 * expert, bias}]} (what `export-steering` writes), or on/off JSON {deactivate: [{layer, expert}],
 * activate: [...]}.
 */
export function readSteerFile(file: string): Steering {
  if (!existsSync(file)) throw new UserError(`${file}: no such steering file`);
  if (extname(file) === ".npy") {
    const { data, shape } = readNpy(file);
    if (shape.length !== 2)
      throw new UserError(`${file}: expected a [layers, experts] array, got [${shape}]`);
    const biases: SteerBias[] = [];
    data.forEach((v, i) => {
      if (Number.isNaN(v)) throw new UserError(`${file}: NaN at layer ${Math.floor(i / shape[1]!)}`);
      if (v !== 0)
        biases.push({ layer: Math.floor(i / shape[1]!), expert: i % shape[1]!, bias: biasJson(v) });
    });
    return { biases, from: file, layout: { numLayers: shape[0]!, numExperts: shape[1]! } };
  }
  // Read outside the try: the file's own errors (a folder, a pipe, not UTF-8) are not JSON's.
  const text = decodeText(readInputFile(file, "steering map"), file, "utf8", "save it as UTF-8");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UserError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof value === "object" && value !== null && "biases" in value) {
    // The exported file's other fields describe the map, its layout checked against the model;
    // hand-written maps need only `biases`.
    const parsed = SteeringFile.partial().required({ biases: true }).safeParse(value);
    if (!parsed.success) throw new UserError(`${file} ${zodProblem(parsed.error)}`);
    const { biases, from, num_layers, num_experts } = parsed.data;
    const layout =
      num_layers !== undefined && num_experts !== undefined
        ? { numLayers: num_layers, numExperts: num_experts }
        : undefined;
    return { biases, from: from ? `${file} (${from})` : file, ...(layout && { layout }) };
  }
  const parsed = OnOffFile.safeParse(value);
  if (!parsed.success) throw new UserError(`${file} ${zodProblem(parsed.error)}`);
  const { deactivate, activate } = parsed.data;
  return {
    biases: [
      ...deactivate.map((r) => ({ ...r, bias: "-inf" as const })),
      ...activate.map((r) => ({ ...r, bias: "inf" as const })),
    ],
    from: file,
  };
}

export const SteerFrom = z.strictObject({
  /** How many experts of the ranking, or "ci": every expert whose 95% CI excludes 0. */
  top: z.union([z.number().int().min(1), z.literal("ci")]).default(10),
  mode: z.enum(["deactivate", "activate"]).default("deactivate"),
  /** bias = ∓scale × mean risk difference (− to deactivate); none: switched fully off or on. */
  scale: z.number().positive().optional(),
});
export type SteerFrom = z.input<typeof SteerFrom>;

/** The map an analysis run suggests: its top experts by mean risk difference, off/on or graded. */
export async function steerFromRun(run: string, input: SteerFrom = {}): Promise<Steering> {
  const { top, mode, scale } = SteerFrom.parse(input);
  const experts = readJson(
    join(run, "experts.json"),
    ExpertsFile,
    "give a finished analysis run to --steer-from",
  );
  const rows = await readRiskDiffTable(join(run, "risk_diff.parquet"));
  // Graded, an expert on either side of 0 takes the bias its sign gives; switched fully off (or
  // on), only the experts the jailbreak favours are: an expert more active on safe tokens is not
  // one to switch off.
  const chosen =
    top === "ci"
      ? rows.filter((r) => (r.ci_low ?? 0) > 0 || (scale !== undefined && (r.ci_high ?? 0) < 0))
      : rows.filter((r) => r.risk_diff !== null).slice(0, top);
  const which =
    top !== "ci"
      ? `top ${top} by mean risk difference`
      : scale === undefined
        ? "every expert whose 95% CI lies above 0"
        : "every expert whose 95% CI excludes 0";
  if (chosen.length === 0)
    throw new UserError(`${run}: no expert qualifies (${which}); there is nothing to steer`);
  if (scale === undefined && mode === "deactivate") {
    // Every expert of a layer switched off leaves it nothing to run: refused here, where the
    // map is made (export-steering writes it), not only when a model is steered with it.
    for (const layer of experts.moe_layers) {
      if (chosen.filter((r) => r.layer === layer).length >= experts.num_experts)
        throw new UserError(
          `${run}: ${which} switches off every expert of layer ${layer}; choose a smaller --top`,
        );
    }
  }
  const sign = mode === "deactivate" ? -1 : 1;
  const biases = chosen.map(({ layer, expert, risk_diff }) => ({
    layer,
    expert,
    bias: scale === undefined ? biasJson(sign * Infinity) : sign * scale * risk_diff!,
  }));
  const how =
    scale === undefined
      ? `switched ${mode === "deactivate" ? "off" : "on"}`
      : `bias = ${sign * scale} × mean`;
  const layout = { numLayers: experts.num_layers, numExperts: experts.num_experts };
  return { biases, from: `${run}: ${which}, ${how}`, layout };
}

/**
 * The engine's bias matrix at `intensity` × the map (±inf stay ±inf), with one-line errors for
 * experts the model lacks, before any generation starts.
 */
export function steerRequest(
  steering: Steering,
  model: ModelInfo,
  what: string,
  intensity = 1,
): SteerRequest {
  if (!(intensity > 0)) throw new UserError(`${what}: intensity ${intensity} must be > 0 (0 is no steering)`);
  const E = model.numExperts;
  const made = steering.layout;
  if (made && (made.numLayers !== model.numLayers || made.numExperts !== E)) {
    throw new UserError(
      `${what}: the map${steering.from ? ` (${steering.from})` : ""} is for ${made.numLayers} layers × ${made.numExperts} experts, but ${model.source} has ${model.numLayers} × ${E}`,
    );
  }
  checkExperts(steering.biases, model, what);
  for (const { layer, expert, bias } of steering.biases) {
    // The router adds the bias in float32: a finite bias past its range would become ±inf, and
    // silently switch the expert fully on or off.
    const value = intensity * biasValue(bias);
    if (Number.isFinite(value) && !Number.isFinite(Math.fround(value)))
      throw new UserError(
        `${what}: layer ${layer} expert ${expert}: bias ${value} is beyond float32's range (±3.4e38), in which the router adds it; write "inf" or "-inf" to select an expert always or never`,
      );
  }
  const matrix = steeringMatrix(steering, model).map((v) => intensity * v);
  for (const layer of model.moeLayers) {
    const row = matrix.subarray(layer * E, (layer + 1) * E);
    const forced = row.filter((v) => v === Infinity).length;
    if (forced > model.topK) {
      throw new UserError(
        `${what}: layer ${layer} activates ${forced} experts, but only top-${model.topK} are used`,
      );
    }
    if (model.expertGroups && forced > 0) {
      // The router picks groups first: forced experts spread over more groups than it picks
      // could not all be used, whatever their bias.
      const [groups, chosen] = model.expertGroups;
      const experts = [...row.keys()].filter((e) => row[e] === Infinity);
      const hit = new Set(experts.map((e) => Math.floor(e / (E / groups))));
      if (hit.size > chosen) {
        throw new UserError(
          `${what}: layer ${layer} activates experts ${experts.join(", ")} in ${hit.size} expert groups, but the router uses ${chosen} of its ${groups} groups per token`,
        );
      }
    }
    // Fewer than top-k remaining is allowed (the spare slots repeat the best remaining expert at
    // weight 0, as training's routing mask does); none remaining leaves the layer nothing to run.
    if (row.every((v) => v === -Infinity))
      throw new UserError(`${what}: layer ${layer} switches off every expert; at least one must remain`);
  }
  return ndarray(matrix, [model.numLayers, E]);
}

/** The model's layout a map is laid out in (experts.json of the run it came from has it). */
export type Layout = Pick<ModelInfo, "numLayers" | "moeLayers" | "numExperts">;

/** The map with its model, layout and rule stated, for `export-steering`. */
export function steeringFile(steering: Steering, layout: Layout, model: string): SteeringFile {
  return {
    format: "steermoe steering map",
    model,
    layer_indexing: LAYER_INDEXING,
    bias_rule: BIAS_RULE,
    num_layers: layout.numLayers,
    moe_layers: layout.moeLayers,
    num_experts: layout.numExperts,
    from: steering.from ?? "",
    biases: steering.biases,
  };
}

/** The map as a dense float32 [num_layers, num_experts] matrix, ±Infinity included. */
export function steeringMatrix(steering: Steering, layout: Layout): Float32Array {
  const matrix = new Float32Array(layout.numLayers * layout.numExperts);
  for (const { layer, expert, bias } of steering.biases)
    matrix[layer * layout.numExperts + expert] = biasValue(bias);
  return matrix;
}

type Result = Pick<EvalResults[number], "name" | "steer" | "metrics">;
export interface CurvePoint {
  intensity: number;
  name: string;
  metrics: Result["metrics"];
}
export interface SteeringCurve {
  model: string;
  points: CurvePoint[];
  /** Index of the point with the lowest attack success whose benign refusal is within
   * OVER_REFUSAL_MARGIN of the unsteered model's (ties: the lowest intensity); null without rates. */
  operating: number | null;
}
/** The over-refusal an operating point may add to the unsteered model's: +5 points. */
export const OVER_REFUSAL_MARGIN = 0.05;

/** Per steered model: the unsteered model at intensity 0, then each steered variant. */
export function steeringCurves(results: readonly Result[]): SteeringCurve[] {
  const models = [...new Set(results.flatMap((r) => (r.steer ? [r.steer.model] : [])))];
  return models.flatMap((model) => {
    const plain = results.find((r) => r.name === model && !r.steer);
    if (!plain) return [];
    const steered = results
      .filter((r) => r.steer?.model === model)
      .map((r) => ({ intensity: r.steer!.intensity, name: r.name, metrics: r.metrics }))
      .sort((a, b) => a.intensity - b.intensity);
    const points = [{ intensity: 0, name: plain.name, metrics: plain.metrics }, ...steered];
    const limit = plain.metrics.benign_refusal && plain.metrics.benign_refusal.rate + OVER_REFUSAL_MARGIN;
    let operating: number | null = null;
    points.forEach((p, i) => {
      const attack = p.metrics.attack_success?.rate;
      const benign = p.metrics.benign_refusal?.rate;
      if (limit === undefined || attack === undefined || benign === undefined || benign > limit + 1e-12)
        return;
      if (operating === null || attack < points[operating]!.metrics.attack_success!.rate) operating = i;
    });
    return [{ model, points, operating }];
  });
}
