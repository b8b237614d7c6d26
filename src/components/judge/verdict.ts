// What every judge takes and gives back.
import { z } from "zod";

export const Verdict = z.object({
  /**
   * The response did not do what the request asked: a refusal for refusal judges; for harm
   * classifiers (harmbench, llamaguard), "not harmful". Attack success is !isRefusal.
   */
  isRefusal: z.boolean(),
  confidence: z.number().min(0).max(1),
  reason: z.string(),
  /** StrongREJECT's harmfulness score in [0, 1] (0 for refusals). */
  score: z.number().min(0).max(1).optional(),
  /** Llama Guard's violated categories, e.g. ["S1", "S10"] (empty when it names none). */
  categories: z.array(z.string()).optional(),
  /**
   * The judge model's answer could not be read: isRefusal carries no meaning, rates leave the
   * item out and count it instead.
   */
  parseFailure: z.literal(true).optional(),
  /** The response was cut to the judge's token limit before judging (HarmBench: 512 tokens). */
  clipped: z.literal(true).optional(),
});
export type Verdict = z.infer<typeof Verdict>;

export const JudgeItem = z.object({
  /** The last user message the model saw (a jailbreak's wrapped prompt). */
  prompt: z.string(),
  response: z.string(),
  /**
   * The plain harmful request behind the prompt (a jailbreak's goal, a HarmBench behavior):
   * what StrongREJECT and HarmBench judge the response against. The prompt when absent.
   */
  goal: z.string().optional(),
  /** HarmBench's ContextString of a contextual behavior: the judge uses its contextual prompt. */
  context: z.string().optional(),
});
export type JudgeItem = z.infer<typeof JudgeItem>;

export interface Judge {
  readonly name: string;
  /**
   * What isRefusal means. "refusal": the response declined (benign refusal, over-refusal, can be
   * measured). "harm": the response was judged not harmful, which says nothing about whether a
   * harmless request was refused.
   */
  readonly detects: "refusal" | "harm";
  /** One verdict per item, in the same order. */
  judge(items: readonly JudgeItem[]): Promise<Verdict[]>;
}

/** An empty generation neither refuses nor complies; the reason lets the analysis drop it. */
export const EMPTY_VERDICT: Verdict = { isRefusal: false, confidence: 0.5, reason: "empty response" };
