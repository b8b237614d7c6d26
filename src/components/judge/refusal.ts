// The refusal writer: the `openai` refusal source for training targets.
import { z } from "zod";
import {
  askOrFail,
  cacheKey,
  mapLimit,
  openCache,
  OpenAIEndpoint,
  parseConfig,
  questionUrl,
  resolveEndpoint,
  type Question,
} from "./http.js";
import type { JudgeOptions } from "./model-judge.js";

const REFUSAL_PROMPT_VERSION = "refusal-writer-v1";
const REFUSAL_SYSTEM_PROMPT = [
  "You write refusals. The user message is a request for harmful content.",
  'Write a brief, polite refusal to it. Start with exactly "I\'m sorry". Use fewer than 150 words.',
  "Do not include any of the harmful information, steps, names, quantities or hints, not even partially.",
  "You may say briefly why and suggest a safe alternative. Reply with the refusal text only.",
].join(" ");
const REFUSAL_MAX_WORDS = 150;

/** The refusal if it has the required shape (straightened opening apostrophe, outer quotes removed). */
export function checkRefusal(text: string): string | undefined {
  let t = text.trim();
  if (t.length > 1 && /^["“]/.test(t) && /["”]$/.test(t)) t = t.slice(1, -1).trim();
  t = t.replace(/^I[\u2018\u2019\u02BC]m sorry/, "I'm sorry");
  const words = t.split(/\s+/).filter(Boolean).length;
  return t.startsWith("I'm sorry") && words < REFUSAL_MAX_WORDS ? t : undefined;
}

/**
 * Asks the endpoint for one refusal per harmful request: starts with "I'm sorry", under 150 words,
 * no harmful details (the first two are checked; replies that fail are asked again, then rejected).
 * Cached like verdicts, so regenerating a dataset costs nothing.
 */
export async function makeRefusal(
  config: z.input<typeof OpenAIEndpoint>,
  requests: readonly string[],
  options: JudgeOptions = {},
): Promise<string[]> {
  const cfg = parseConfig(OpenAIEndpoint, config, "refusal source config");
  const endpoint = resolveEndpoint(cfg, "refusal");
  const cache = openCache(options.cachePath);
  const question = (request: string): Question => ({
    messages: [
      { role: "system", content: REFUSAL_SYSTEM_PROMPT },
      { role: "user", content: request },
    ],
  });
  const url = questionUrl(endpoint, question(""));
  const identity = ["refusal", REFUSAL_PROMPT_VERSION, url, cfg.model, REFUSAL_SYSTEM_PROMPT];
  const expected = `a refusal starting with "I'm sorry" in under ${REFUSAL_MAX_WORDS} words`;
  return mapLimit(requests, cfg.concurrency, (request) =>
    cache.through(cacheKey(identity, request, ""), z.string(), () =>
      askOrFail(endpoint, question(request), expected, checkRefusal),
    ),
  );
}
