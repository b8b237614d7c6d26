// The BatchPlan fixes which samples form each MixedBatch, the statistical unit of the analysis:
// risk_diff compares safe and unsafe tokens inside one batch, so batch identity (batchIdx) is fixed
// here once and survives generation, judging and quality control unchanged.
//
// Safe samples and unsafe samples are drawn in order from two pools that follow the same (optionally
// shuffled) pair order. With nSafe == nUnsafe (B even, r = 0.5) batch b therefore holds both samples
// of the same pairs; with any other ratio a batch's safe and unsafe samples need not share pairs.
// Plain types: plans are built here, never parsed (the run files that record them have their
// schemas in io/run-files.ts).
import { UserError } from "../errors.js";
import type { Pair } from "./pairs.js";
import type { Sample } from "../domain.js";
import { mulberry32, shuffle } from "../method/stats.js";

/** Safe samples first, then unsafe. */
export interface MixedBatch {
  batchIdx: number;
  samples: Sample[];
}

export interface BatchPlan {
  batchSize: number;
  safeRatio: number;
  nSafe: number;
  nUnsafe: number;
  seed: number | null;
  batches: MixedBatch[];
}

export interface BatchOptions {
  batchSize?: number;
  safeRatio?: number;
  /** Shuffles the pair order; without it batches follow dataset order. */
  seed?: number;
}

/** Safe and unsafe samples per batch, refused with the reason when the options cannot make one. */
export function batchShape(options: BatchOptions = {}): { nSafe: number; nUnsafe: number } {
  const { batchSize = 16, safeRatio = 0.5, seed } = options;
  if (!Number.isInteger(batchSize) || batchSize < 2) {
    throw new UserError(`batch size ${batchSize}: use a whole number of at least 2`);
  }
  if (!(safeRatio > 0 && safeRatio < 1)) {
    throw new UserError(`safe ratio ${safeRatio}: use a number strictly between 0 and 1`);
  }
  if (seed !== undefined && !(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32)) {
    throw new UserError(`shuffle seed ${seed}: use a whole number from 0 to ${2 ** 32 - 1}`);
  }
  // Fractional shares would split a pair across batches (3 at 0.5: 1 safe + 2 unsafe); a whole,
  // non-zero share leaves both kinds in every batch, since the ratio is strictly inside (0, 1).
  const nSafe = Math.round(batchSize * safeRatio);
  if (Math.abs(nSafe - batchSize * safeRatio) > 1e-9) {
    throw new UserError(
      `batch size ${batchSize} with safe ratio ${safeRatio} gives ${+(batchSize * safeRatio).toFixed(6)} safe samples per batch; ` +
        `a batch must hold whole numbers of safe and unsafe samples (at 0.5: whole pairs, an even size)`,
    );
  }
  return { nSafe, nUnsafe: batchSize - nSafe };
}

export function planBatches(pairs: readonly Pair[], options: BatchOptions = {}): BatchPlan {
  const { batchSize = 16, safeRatio = 0.5, seed } = options;
  const { nSafe, nUnsafe } = batchShape(options);
  const needed = Math.max(nSafe, nUnsafe);
  if (pairs.length < needed) {
    throw new UserError(
      `one batch of ${nSafe} safe + ${nUnsafe} unsafe samples needs ${needed} pairs but the dataset has ${pairs.length}; ` +
        "use more pairs or a smaller batch size",
    );
  }

  const order = seed === undefined ? [...pairs] : shuffled(pairs, seed);
  const batchCount = Math.floor(order.length / needed);
  const batches: MixedBatch[] = [];
  for (let batchIdx = 0; batchIdx < batchCount; batchIdx++) {
    const safe = order.slice(batchIdx * nSafe, (batchIdx + 1) * nSafe);
    const unsafe = order.slice(batchIdx * nUnsafe, (batchIdx + 1) * nUnsafe);
    const members = [
      ...safe.map((pair) => ({ pair, label: "safe" as const })),
      ...unsafe.map((pair) => ({ pair, label: "unsafe" as const })),
    ];
    batches.push({
      batchIdx,
      samples: members.map(({ pair, label }, inBatchIdx) => ({
        sample_id: `${pair.pairId}:${label}`,
        pair_id: pair.pairId,
        batch_idx: batchIdx,
        in_batch_idx: inBatchIdx,
        label,
        messages: pair[label],
      })),
    });
  }
  return { batchSize, safeRatio, nSafe, nUnsafe, seed: seed ?? null, batches };
}

export interface QcResult {
  /** Kept batches, with their original batch_idx and in_batch_idx. */
  batches: MixedBatch[];
  skippedBatchIdx: number[];
}

// A pair is dropped whole (both samples, wherever they sit), so QC never unbalances a pair. A batch
// with no safe or no unsafe sample left has no risk_diff and is skipped; at r = 0.5 that is exactly
// a batch with no pair left.
export function dropPairs(batches: readonly MixedBatch[], dropPairIds: ReadonlySet<string>): QcResult {
  const kept: MixedBatch[] = [];
  const skippedBatchIdx: number[] = [];
  for (const batch of batches) {
    const samples = batch.samples.filter((sample) => !dropPairIds.has(sample.pair_id));
    const hasBoth = samples.some((s) => s.label === "safe") && samples.some((s) => s.label === "unsafe");
    if (hasBoth) kept.push({ batchIdx: batch.batchIdx, samples });
    else skippedBatchIdx.push(batch.batchIdx);
  }
  return { batches: kept, skippedBatchIdx };
}

// Fisher–Yates driven by mulberry32: integer-only arithmetic, so a seed gives the same order on
// every machine and Node version (Math.random cannot be seeded).
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  return shuffle(items, mulberry32(seed));
}
