// A Judge decides, for each model response, whether it refused (or, for harm classifiers, whether
// it was harmful). The analysis judges hundreds of responses per run, so judges take batches; the
// judges that ask a model cache every verdict on disk so a rerun (or a resumed run) never pays for
// the same question twice.
//
//   keyword       refusal phrases (steermoe's list, or the AdvBench prefixes of GCG/HarmBench)
//   openai        our own refusal question to any chat model, answered as JSON
//   strongreject  the StrongREJECT rubric: refused, convincing, specific → score in [0, 1]
//   harmbench     the HarmBench classifier prompt (standard / contextual): yes / no
//   llamaguard    a Llama Guard-style moderation model: safe / unsafe + categories
import { z } from "zod";
import { UserError, zodProblem } from "../errors.js";
import { KeywordJudgeConfig, keywordJudge } from "./keyword.js";
import {
  HarmBenchJudgeConfig,
  harmBenchJudge,
  LlamaGuardJudgeConfig,
  llamaGuardJudge,
  OpenAIJudgeConfig,
  openaiJudge,
  StrongRejectJudgeConfig,
  strongRejectJudge,
  type JudgeOptions,
} from "./model-judge.js";
import type { Judge } from "./verdict.js";

export { Verdict, JudgeItem, type Judge } from "./verdict.js";
export { OpenAIEndpoint } from "./http.js";
export { ADVBENCH_PREFIXES, findRefusalPhrase, KeywordJudgeConfig, keywordJudge } from "./keyword.js";
export {
  HarmBenchJudgeConfig,
  openaiJudge,
  parseHarmBench,
  parseLlamaGuard,
  parseStrongReject,
  StrongRejectJudgeConfig,
  type JudgeOptions,
} from "./model-judge.js";
export { checkRefusal, makeRefusal } from "./refusal.js";

export const JudgeConfig = z.discriminatedUnion("kind", [
  KeywordJudgeConfig,
  OpenAIJudgeConfig,
  StrongRejectJudgeConfig,
  HarmBenchJudgeConfig,
  LlamaGuardJudgeConfig,
]);
export type JudgeConfig = z.infer<typeof JudgeConfig>;

/** The judges that ask a model behind an endpoint (and take the --judge-url flags). */
export const ENDPOINT_JUDGES: readonly JudgeConfig["kind"][] = [
  "openai",
  "strongreject",
  "harmbench",
  "llamaguard",
];

export function createJudge(
  config: z.input<typeof JudgeConfig> = { kind: "keyword" },
  options: JudgeOptions = {},
): Judge {
  const parsed = JudgeConfig.safeParse(config);
  if (!parsed.success) throw new UserError(`judge config ${zodProblem(parsed.error)}`);
  const c = parsed.data;
  switch (c.kind) {
    case "keyword":
      return keywordJudge(c);
    case "openai":
      return openaiJudge(c, options);
    case "strongreject":
      return strongRejectJudge(c, options);
    case "harmbench":
      return harmBenchJudge(c, options);
    case "llamaguard":
      return llamaGuardJudge(c, options);
  }
}

/**
 * One question before anything is generated or written, for the judges behind an endpoint: a
 * wrong URL, key, model or a judge that answers in another format fails now, not after the first
 * batch. Uncached, so the run folder stays untouched.
 */
export async function probeJudge(config: z.input<typeof JudgeConfig>): Promise<void> {
  const judge = createJudge(config);
  if (config.kind === "keyword") return;
  const [verdict] = await judge.judge([{ prompt: "Say hello.", response: "Hello! How can I help?" }]);
  if (verdict?.parseFailure) {
    throw new UserError(
      `judge ${judge.name} answered a test question with something it cannot read (${verdict.reason})`,
    );
  }
}
