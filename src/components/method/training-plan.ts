// What a training run does step by step: which batch, with which expert mask, at which learning
// rate. Pure functions of the settings, so a resumed run recomputes exactly the same plan.
import { z } from "zod";
import { ExpertRef, type LayerExperts, type Sample } from "../domain.js";
import { expertLabel, type ExpertSet } from "./riskdiff.js";
import { mulberry32, shuffle } from "./stats.js";

/** A sample as training takes it: from an analysis run, a line of its SFT dataset; from --data, a
 * conversation, which has no safe or unsafe side. */
export type TrainSample = Pick<Sample, "sample_id" | "messages"> & Partial<Pick<Sample, "label">>;

export interface TrainBatch {
  batchIdx: number;
  samples: TrainSample[];
  /** Routing mask while training on this batch: per layer, the only experts tokens may reach. */
  allowed: LayerExperts;
}

/** An experts file: {layer, expert} entries (other fields, such as label and score, are allowed). */
export const ExpertList = z.array(ExpertRef.loose());

/** Batch order of one epoch: shuffled with seed + epoch, so every epoch differs and replays alike. */
export function epochOrder(count: number, epoch: number, seed: number, shuffled: boolean): number[] {
  const order = Array.from({ length: count }, (_, i) => i);
  return shuffled ? shuffle(order, mulberry32((seed + epoch) >>> 0)) : order;
}

/** Linear warmup over the first ceil(warmupRatio·total) steps, then linear decay to 0. */
export function learningRate(step: number, total: number, peak: number, warmupRatio: number): number {
  const warmup = Math.ceil(warmupRatio * total);
  if (step < warmup) return (peak * (step + 1)) / warmup;
  return (peak * Math.max(0, total - step)) / Math.max(1, total - warmup);
}

export function layerExperts(set: readonly ExpertRef[]): LayerExperts {
  const out: LayerExperts = {};
  for (const { layer, expert } of set) (out[String(layer)] ??= []).push(expert);
  for (const list of Object.values(out)) list.sort((a, b) => a - b);
  return out;
}

export function intersect(set: readonly ExpertRef[], keep: readonly ExpertRef[]): ExpertRef[] {
  const allowed = new Set(keep.map((r) => `${r.layer}:${r.expert}`));
  return set.filter((r) => allowed.has(`${r.layer}:${r.expert}`));
}

export function labelled(set: readonly ExpertRef[]): ExpertSet {
  return set.map((r) => ({
    layer: r.layer,
    expert: r.expert,
    label: expertLabel(r.layer, r.expert),
    score: 0,
  }));
}
