// RiskDiff: how much more often each expert is routed to on unsafe tokens than on safe ones.
// Every count is over the tokens of the chosen part only (docs/method.md: `--tokens generation|prompt|all`).
//
// Layout: per-batch arrays are flat [batches, moeLayers, experts], index (b*Lm + li)*E + e, where li
// is the position in `moeLayers`; aggregate arrays are flat [moeLayers, experts]. Expert ids come in
// flat [tokens, moeLayers, topK] (row-major), as the engine captures them.
import { z } from "zod";
import { UserError } from "../errors.js";
import { ExpertRef, type ModelInfo, type SampleLabel } from "../domain.js";
import { mulberry32, tQuantile } from "./stats.js";

export interface RoutedSample {
  label: SampleLabel;
  /** Flat [tokens, moeLayers, topK]: token t, MoE layer li, slot j at ((t*Lm)+li)*K + j. */
  expertIds: Uint8Array | Uint16Array;
}

export interface RoutingShape {
  /** All decoder layers; masks get a (zero) row for dense layers too. */
  numLayers: number;
  /** Decoder-layer index of each MoE layer, strictly ascending. */
  moeLayers: readonly number[];
  numExperts: number;
  topK: number;
}

export interface RiskDiffAggregate {
  /** Sums over usable batches, [Lm, E]. */
  aSafe: Float64Array;
  dSafe: Float64Array;
  aUnsafe: Float64Array;
  dUnsafe: Float64Array;
  /** Means over usable batches, [Lm, E]; riskDiff is the ranking score. */
  aSafeN: Float64Array;
  aUnsafeN: Float64Array;
  riskDiff: Float64Array;
  /** Sample standard deviation (n-1) of the per-batch risk_diff; 0 when n < 2. */
  std: Float64Array;
  /** 95% t-interval of the mean; [-1, 1] (the whole range of a risk difference) when n < 2. */
  ciLow: Float64Array;
  ciHigh: Float64Array;
  /** Fraction of usable batches with risk_diff > 0. */
  fracPositive: Float64Array;
  /** Number of usable batches aggregated (the same for every cell). */
  nBatches: number;
}

/** Per-batch arrays ([B, Lm, E], from PerBatch) and their aggregate. */
export interface RiskDiffResult extends PerBatch {
  shape: RoutingShape;
  numBatches: number;
  /** Tokens per label per batch, [B]. */
  tokensSafe: Uint32Array;
  tokensUnsafe: Uint32Array;
  /**
   * 1 where the batch has tokens of both labels. A batch lacking either label has no defined rate
   * for it: its rates for that label are stored as 0, its risk_diff as 0, and it is left out of the
   * aggregate and of per-batch selection (listed in `excludedBatches`).
   */
  usable: Uint8Array;
  excludedBatches: number[];
  aggregate: RiskDiffAggregate;
}

/** An expert a selection chose, with its label and score. */
export const SelectedExpert = ExpertRef.extend({
  label: z.string().regex(/^L\d{2,}_E\d{2,}$/),
  /** risk_diff of the batch for a per-batch set; mean risk_diff for union and global sets. */
  score: z.number(),
});
export type SelectedExpert = z.infer<typeof SelectedExpert>;
export const ExpertSetSchema = z.array(SelectedExpert);
export type ExpertSet = SelectedExpert[];

/** The shape risk differences and masks are computed in, from a model's description. */
export function routingShape(
  model: Pick<ModelInfo, "numLayers" | "moeLayers" | "numExperts" | "topK">,
): RoutingShape {
  return {
    numLayers: model.numLayers,
    moeLayers: model.moeLayers,
    numExperts: model.numExperts,
    topK: model.topK,
  };
}

export function expertLabel(layer: number, expert: number): string {
  return `L${String(layer).padStart(2, "0")}_E${String(expert).padStart(2, "0")}`;
}

function checkShape(shape: RoutingShape): void {
  const { numLayers, moeLayers, numExperts, topK } = shape;
  const positiveInt = (v: number) => Number.isInteger(v) && v > 0;
  if (!positiveInt(numLayers) || !positiveInt(numExperts) || !positiveInt(topK) || moeLayers.length === 0) {
    throw new UserError(
      `routing shape: numLayers, numExperts, topK must be positive integers and moeLayers non-empty ` +
        `(got numLayers=${numLayers}, numExperts=${numExperts}, topK=${topK}, ${moeLayers.length} MoE layers)`,
    );
  }
  if (numExperts > 65536) throw new UserError(`routing shape: numExperts ${numExperts} exceeds uint16 ids`);
  moeLayers.forEach((layer, i) => {
    const prev = i === 0 ? -1 : (moeLayers[i - 1] as number);
    if (!Number.isInteger(layer) || layer <= prev || layer >= numLayers) {
      throw new UserError(
        `routing shape: moeLayers must be strictly ascending decoder-layer indices below numLayers=${numLayers} (got ${moeLayers.join(",")})`,
      );
    }
  });
}

/** Counts a[b,l,e] and tokens per label in one pass over the ids, then forms rates and risk_diff. */
export function computeRiskDiff(
  batches: readonly (readonly RoutedSample[])[],
  shape: RoutingShape,
): RiskDiffResult {
  checkShape(shape);
  const E = shape.numExperts;
  const K = shape.topK;
  const Lm = shape.moeLayers.length;
  const LE = Lm * E;
  const B = batches.length;
  const aSafe = new Uint32Array(B * LE);
  const aUnsafe = new Uint32Array(B * LE);
  const tokensSafe = new Uint32Array(B);
  const tokensUnsafe = new Uint32Array(B);
  // seen[l*E+e] holds the stamp of the last token counted there, so a (pathological) repeated id in
  // one token's top-k counts once without clearing anything between tokens.
  const seen = new Uint32Array(LE);
  let stamp = 0;

  for (let b = 0; b < B; b++) {
    const batch = batches[b] as readonly RoutedSample[];
    const base = b * LE;
    // A plain loop: inside a forEach callback `stamp` becomes a closure variable, and the count
    // takes a quarter longer (bench/run.ts, risk difference).
    for (let s = 0; s < batch.length; s++) {
      const sample = batch[s] as RoutedSample;
      const ids = sample.expertIds;
      if (ids.length % (Lm * K) !== 0) {
        throw new UserError(
          `batch ${b} sample ${s}: ${ids.length} expert ids is not a whole number of tokens × ${Lm} MoE layers × top-${K}`,
        );
      }
      const tokens = ids.length / (Lm * K);
      let counts: Uint32Array;
      if (sample.label === "unsafe") {
        counts = aUnsafe;
        tokensUnsafe[b] = (tokensUnsafe[b] as number) + tokens;
      } else if (sample.label === "safe") {
        counts = aSafe;
        tokensSafe[b] = (tokensSafe[b] as number) + tokens;
      } else {
        throw new UserError(
          `batch ${b} sample ${s}: label must be "safe" or "unsafe", got ${String(sample.label)}`,
        );
      }
      stamp = countSample(ids, tokens, Lm, E, K, counts, base, seen, stamp, b, s);
    }
  }

  const usable = new Uint8Array(B);
  const excludedBatches: number[] = [];
  for (let b = 0; b < B; b++) {
    if ((tokensSafe[b] as number) > 0 && (tokensUnsafe[b] as number) > 0) usable[b] = 1;
    else excludedBatches.push(b);
  }

  const dSafe = new Uint32Array(B * LE);
  const dUnsafe = new Uint32Array(B * LE);
  const aSafeN = new Float64Array(B * LE);
  const aUnsafeN = new Float64Array(B * LE);
  const riskDiff = new Float64Array(B * LE);
  for (let b = 0; b < B; b++) {
    const ts = tokensSafe[b] as number;
    const tu = tokensUnsafe[b] as number;
    for (let i = b * LE; i < (b + 1) * LE; i++) {
      const as = aSafe[i] as number;
      const au = aUnsafe[i] as number;
      dSafe[i] = ts - as;
      dUnsafe[i] = tu - au;
      // a/(a+d) with a+d = tokens of the label; an empty label keeps rate 0 (see `usable`).
      const rs = ts > 0 ? as / ts : 0;
      const ru = tu > 0 ? au / tu : 0;
      aSafeN[i] = rs;
      aUnsafeN[i] = ru;
      riskDiff[i] = usable[b] ? ru - rs : 0;
    }
  }

  const perBatch = { aSafe, dSafe, aUnsafe, dUnsafe, aSafeN, aUnsafeN, riskDiff };
  return {
    shape,
    numBatches: B,
    tokensSafe,
    tokensUnsafe,
    usable,
    excludedBatches,
    ...perBatch,
    aggregate: aggregate(perBatch, usable, LE),
  };
}

// Kept apart so V8 specialises the hot loop; returns the next free stamp.
function countSample(
  ids: Uint8Array | Uint16Array,
  tokens: number,
  Lm: number,
  E: number,
  K: number,
  counts: Uint32Array,
  base: number,
  seen: Uint32Array,
  stamp: number,
  b: number,
  s: number,
): number {
  let p = 0;
  for (let t = 0; t < tokens; t++) {
    stamp++;
    for (let l = 0; l < Lm; l++) {
      const row = l * E;
      for (let j = 0; j < K; j++) {
        const e = ids[p++] as number;
        if (e >= E) {
          throw new UserError(
            `batch ${b} sample ${s}: expert id ${e} at token ${t} is out of range for ${E} experts`,
          );
        }
        const idx = row + e;
        if (seen[idx] !== stamp) {
          seen[idx] = stamp;
          counts[base + idx] = (counts[base + idx] as number) + 1;
        }
      }
    }
  }
  return stamp;
}

/** Per batch, [B, Lm, E]. */
export interface PerBatch {
  aSafe: Uint32Array;
  dSafe: Uint32Array;
  aUnsafe: Uint32Array;
  dUnsafe: Uint32Array;
  aSafeN: Float64Array;
  aUnsafeN: Float64Array;
  riskDiff: Float64Array;
}

function aggregate(pb: PerBatch, usable: Uint8Array, LE: number): RiskDiffAggregate {
  const rows: number[] = [];
  for (let b = 0; b < usable.length; b++) if (usable[b]) rows.push(b);
  const n = rows.length;
  const out: RiskDiffAggregate = {
    aSafe: new Float64Array(LE),
    dSafe: new Float64Array(LE),
    aUnsafe: new Float64Array(LE),
    dUnsafe: new Float64Array(LE),
    aSafeN: new Float64Array(LE),
    aUnsafeN: new Float64Array(LE),
    riskDiff: new Float64Array(LE),
    std: new Float64Array(LE),
    ciLow: new Float64Array(LE),
    ciHigh: new Float64Array(LE),
    fracPositive: new Float64Array(LE),
    nBatches: n,
  };
  // One fused pass: per-array loops over a mixed list of typed arrays defeat V8's specialisation.
  for (const b of rows) {
    const off = b * LE;
    for (let i = 0; i < LE; i++) {
      const k = off + i;
      out.aSafe[i] = (out.aSafe[i] as number) + (pb.aSafe[k] as number);
      out.dSafe[i] = (out.dSafe[i] as number) + (pb.dSafe[k] as number);
      out.aUnsafe[i] = (out.aUnsafe[i] as number) + (pb.aUnsafe[k] as number);
      out.dUnsafe[i] = (out.dUnsafe[i] as number) + (pb.dUnsafe[k] as number);
      out.aSafeN[i] = (out.aSafeN[i] as number) + (pb.aSafeN[k] as number);
      out.aUnsafeN[i] = (out.aUnsafeN[i] as number) + (pb.aUnsafeN[k] as number);
      out.riskDiff[i] = (out.riskDiff[i] as number) + (pb.riskDiff[k] as number);
    }
  }
  if (n === 0) {
    out.ciLow.fill(-1);
    out.ciHigh.fill(1);
    return out;
  }
  for (const mean of [out.aSafeN, out.aUnsafeN, out.riskDiff]) {
    for (let i = 0; i < LE; i++) mean[i] = (mean[i] as number) / n;
  }
  // Two passes (mean, then squared deviations) keep the std accurate when spreads are tiny.
  const ss = new Float64Array(LE);
  const pos = new Float64Array(LE);
  for (const b of rows) {
    const off = b * LE;
    for (let i = 0; i < LE; i++) {
      const v = pb.riskDiff[off + i] as number;
      const dev = v - (out.riskDiff[i] as number);
      ss[i] = (ss[i] as number) + dev * dev;
      if (v > 0) pos[i] = (pos[i] as number) + 1;
    }
  }
  const t = n >= 2 ? tQuantile(0.975, n - 1) : 0;
  for (let i = 0; i < LE; i++) {
    out.fracPositive[i] = (pos[i] as number) / n;
    const mean = out.riskDiff[i] as number;
    if (n < 2) {
      out.ciLow[i] = -1;
      out.ciHigh[i] = 1;
      continue;
    }
    const sd = Math.sqrt((ss[i] as number) / (n - 1));
    const half = (t * sd) / Math.sqrt(n);
    out.std[i] = sd;
    out.ciLow[i] = mean - half;
    out.ciHigh[i] = mean + half;
  }
  return out;
}

// ---- Selection

export interface SelectionOptions {
  batchThreshold?: number;
  batchTopK?: number;
  globalThreshold?: number;
  globalTopK?: number;
}

export interface ExpertSelection {
  /** One set per batch (empty for excluded batches), best first. */
  perBatch: ExpertSet[];
  /** Every expert in any per-batch set, scored by mean risk_diff, best first. */
  union: ExpertSet;
  global: ExpertSet;
  /** [batches, numLayers, numExperts], 1 = unsafe. */
  batchMasks: Float32Array;
  /** [numLayers, numExperts] each. */
  unionMask: Float32Array;
  globalMask: Float32Array;
}

/** Cells with score > threshold, best `topK` by score; ties go to the lower (layer, expert). */
function pickTop(
  scores: Float64Array,
  offset: number,
  shape: RoutingShape,
  threshold: number,
  topK: number,
): ExpertSet {
  const E = shape.numExperts;
  const LE = shape.moeLayers.length * E;
  const k = Math.max(0, Math.min(topK, LE));
  // The k-th best score comes from a native sort of the candidate scores (fast even before the JIT
  // warms up); only the k winners are then ordered with a comparator.
  const cand = new Float64Array(LE);
  let m = 0;
  for (let i = 0; i < LE; i++) {
    const v = scores[offset + i] as number;
    if (v > threshold) cand[m++] = v;
  }
  if (m === 0 || k === 0) return [];
  const cutoff = cand.subarray(0, m).sort()[m - Math.min(k, m)] as number;
  const above: number[] = [];
  const at: number[] = [];
  for (let i = 0; i < LE; i++) {
    const v = scores[offset + i] as number;
    if (v > cutoff) above.push(i);
    else if (v === cutoff) at.push(i);
  }
  // Cells are visited in (layer, expert) order (moeLayers ascend), so ties at the cutoff go to the
  // lower (layer, expert), and the final sort breaks remaining ties the same way.
  const chosen = above.concat(at.slice(0, k - above.length));
  chosen.sort((x, y) => (scores[offset + y] as number) - (scores[offset + x] as number) || x - y);
  return chosen.map((i) => cellRef(shape, i, scores[offset + i] as number));
}

function cellRef(shape: RoutingShape, cell: number, score: number): SelectedExpert {
  const E = shape.numExperts;
  const layer = shape.moeLayers[Math.floor(cell / E)] as number;
  const expert = cell % E;
  return { layer, expert, label: expertLabel(layer, expert), score };
}

export function expertMask(set: ExpertSet, shape: RoutingShape): Float32Array {
  const mask = new Float32Array(shape.numLayers * shape.numExperts);
  writeMask(mask, 0, set, shape);
  return mask;
}

export function stackedMasks(sets: readonly ExpertSet[], shape: RoutingShape): Float32Array {
  const size = shape.numLayers * shape.numExperts;
  const masks = new Float32Array(sets.length * size);
  sets.forEach((set, b) => writeMask(masks, b * size, set, shape));
  return masks;
}

function writeMask(mask: Float32Array, offset: number, set: ExpertSet, shape: RoutingShape): void {
  for (const { layer, expert } of set) {
    if (layer >= shape.numLayers || expert >= shape.numExperts) {
      throw new UserError(
        `expert ${expertLabel(layer, expert)} is outside ${shape.numLayers} layers × ${shape.numExperts} experts`,
      );
    }
    mask[offset + layer * shape.numExperts + expert] = 1;
  }
}

export function selectExperts(r: RiskDiffResult, opts: SelectionOptions = {}): ExpertSelection {
  const { batchThreshold = 0, batchTopK = 50, globalThreshold = 0.05, globalTopK = 50 } = opts;
  const LE = r.shape.moeLayers.length * r.shape.numExperts;
  const perBatch: ExpertSet[] = [];
  for (let b = 0; b < r.numBatches; b++) {
    perBatch.push(r.usable[b] ? pickTop(r.riskDiff, b * LE, r.shape, batchThreshold, batchTopK) : []);
  }
  const global = pickTop(r.aggregate.riskDiff, 0, r.shape, globalThreshold, globalTopK);
  const union = unionOf(perBatch, r);
  return {
    perBatch,
    union,
    global,
    batchMasks: stackedMasks(perBatch, r.shape),
    unionMask: expertMask(union, r.shape),
    globalMask: expertMask(global, r.shape),
  };
}

function unionOf(sets: readonly ExpertSet[], r: RiskDiffResult): ExpertSet {
  const E = r.shape.numExperts;
  const cellOf = new Map(r.shape.moeLayers.map((layer, li) => [layer, li * E]));
  const cells = new Set<number>();
  for (const set of sets) for (const x of set) cells.add((cellOf.get(x.layer) as number) + x.expert);
  const scores = r.aggregate.riskDiff;
  return [...cells]
    .sort((x, y) => (scores[y] as number) - (scores[x] as number) || x - y)
    .map((i) => cellRef(r.shape, i, scores[i] as number));
}

/**
 * Ablation control: for each usable batch, `topK` (one count, or one per batch) distinct (MoE layer,
 * expert) cells drawn uniformly
 * with mulberry32(seed + batch_idx), so a batch's draw does not depend on the other batches. Scores
 * are that batch's risk_diff; sets are listed in (layer, expert) order.
 */
export type RandomSelection = Omit<ExpertSelection, "global" | "globalMask">;

export function randomExperts(
  r: RiskDiffResult,
  opts: { seed: number; topK?: number | readonly number[] },
): RandomSelection {
  const { seed, topK = 50 } = opts;
  const LE = r.shape.moeLayers.length * r.shape.numExperts;
  const perBatch: ExpertSet[] = [];
  for (let b = 0; b < r.numBatches; b++) {
    if (!r.usable[b]) {
      perBatch.push([]);
      continue;
    }
    const rand = mulberry32((seed + b) >>> 0);
    const pool = Uint32Array.from({ length: LE }, (_, i) => i);
    const k = Math.min(Math.max(0, typeof topK === "number" ? topK : (topK[b] ?? 0)), LE);
    // Partial Fisher–Yates: the first k slots end up a uniform k-subset.
    for (let i = 0; i < k; i++) {
      const j = i + Math.floor(rand() * (LE - i));
      const tmp = pool[i] as number;
      pool[i] = pool[j] as number;
      pool[j] = tmp;
    }
    const chosen = Array.from(pool.subarray(0, k)).sort((x, y) => x - y);
    perBatch.push(chosen.map((i) => cellRef(r.shape, i, r.riskDiff[b * LE + i] as number)));
  }
  const union = unionOf(perBatch, r);
  return {
    perBatch,
    union,
    batchMasks: stackedMasks(perBatch, r.shape),
    unionMask: expertMask(union, r.shape),
  };
}
