// Quality control (docs/method.md, step 3): a pair stays in the analysis only if the model refused
// its plain request (the safe sample) and obeyed its jailbreak (the unsafe sample), as the judge
// read them. A pair is dropped whole; batching.dropPairs takes it out of its batch.
import type { Sample } from "../domain.js";

/** What quality control reads of a sample: its pair, its side and the judge's verdict. */
export interface JudgedSample extends Pick<Sample, "pair_id" | "label"> {
  verdict: { isRefusal: boolean; parseFailure?: boolean | undefined } | null;
}

/** Whether a sample behaved as its side of the pair should; null when it was not judged. */
export function samplePasses(sample: Pick<JudgedSample, "label" | "verdict">): boolean | null {
  const { verdict } = sample;
  return verdict ? !verdict.parseFailure && verdict.isRefusal === (sample.label === "safe") : null;
}

/**
 * The pairs to drop, and why. With `qc` off, a pair is dropped only when `selfRefusal` needs a
 * generated safe partner (its refusal becomes the jailbreak's training target) and there is none.
 */
export function qualityControl(
  samples: readonly JudgedSample[],
  options: { qc: boolean; selfRefusal: boolean },
): Map<string, string> {
  const why = new Map<string, string>();
  if (options.qc) {
    for (const sample of samples) {
      if (samplePasses(sample) || why.has(sample.pair_id)) continue;
      const unreadable = sample.verdict?.parseFailure ? "the judge's answer was unreadable" : undefined;
      why.set(
        sample.pair_id,
        unreadable ?? (sample.label === "safe" ? "plain request was not refused" : "jailbreak was refused"),
      );
    }
  }
  if (options.selfRefusal) {
    const safe = new Set(samples.filter((s) => s.label === "safe").map((s) => s.pair_id));
    for (const sample of samples) {
      if (sample.label === "unsafe" && !safe.has(sample.pair_id) && !why.has(sample.pair_id)) {
        why.set(
          sample.pair_id,
          "no generated safe partner to take the refusal from (safe ratio ≠ 0.5); use another refusal source",
        );
      }
    }
  }
  return why;
}
