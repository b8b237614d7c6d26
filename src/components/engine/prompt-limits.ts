// Before anything is generated: every prompt is measured by the model's own tokenizer and chat
// template (one engine call, no model forward) and checked against the model's context and
// --max-prompt-tokens, and the compute batch is shrunk until its estimated memory fits the budget.
// A 2 MB goal is then a one-line error (or a skipped record), never a generation that swaps the
// machine to death.
import { UserError } from "../errors.js";
import type { Generator } from "./generator.js";
import type { Messages, ModelInfo } from "../domain.js";

/** A conversation to run, and where it came from ("data.json record id 7 field goal"). */
export interface Prompt {
  messages: Messages;
  where: string;
  /** Its sample id, which the engine names if the chat template rejects the conversation. */
  id?: string;
}

export interface PromptLimits {
  /** Tokens generated after the prompt; 0 for training sequences, which are measured whole. */
  maxNewTokens: number;
  maxPromptTokens?: number | undefined;
  /** Leave over-long prompts out instead of refusing the whole input; undefined where the command
   * has no --skip-long (its error does not advise it). */
  skipLong?: boolean | undefined;
}

export interface MeasuredPrompts {
  /** Per prompt: false when --skip-long left it out. */
  keep: boolean[];
  /** Longest kept sequence, prompt and generation together: what the memory estimate sizes. */
  longest: number;
}

const gb = (bytes: number) => `${(bytes / 2 ** 30).toFixed(bytes < 2 ** 30 ? 3 : 1)} GiB`;

/** Token counts of `prompts`, checked against the model's context and the limits. */
export async function measurePrompts(
  generator: Pick<Generator, "countTokens" | "freeMemory">,
  model: ModelInfo,
  prompts: readonly Prompt[],
  limits: PromptLimits,
): Promise<MeasuredPrompts> {
  const { context } = model;
  const whole = limits.maxNewTokens === 0;
  if (context !== null && limits.maxNewTokens >= context) {
    throw new UserError(
      `--max-new-tokens ${limits.maxNewTokens} leaves no room for a prompt in the context of ${model.source} (${context} tokens)`,
    );
  }
  const lengths = await generator.countTokens(
    prompts.map((p) => p.messages),
    !whole,
    prompts.every((p) => p.id !== undefined) ? prompts.map((p) => p.id!) : undefined,
  );
  return fitPrompts(model, prompts, lengths, limits);
}

/** Prompts of the given token lengths, checked against the model's context and the limits. */
export function fitPrompts(
  model: ModelInfo,
  prompts: readonly Prompt[],
  lengths: ArrayLike<number>,
  limits: PromptLimits,
): MeasuredPrompts {
  const { context } = model;
  const whole = limits.maxNewTokens === 0;
  const room = context === null ? Infinity : context - limits.maxNewTokens;
  const limit = Math.min(limits.maxPromptTokens ?? Infinity, room);
  const reason =
    limit === limits.maxPromptTokens
      ? `--max-prompt-tokens ${limit}`
      : whole
        ? `the context of ${model.source}`
        : `the context of ${model.source} (${context} tokens) less --max-new-tokens ${limits.maxNewTokens}`;
  let longest = 0;
  const keep = prompts.map((prompt, i) => {
    const length = lengths[i]!;
    if (length <= limit) {
      longest = Math.max(longest, length + limits.maxNewTokens);
      return true;
    }
    if (limits.skipLong) return false;
    const what = whole ? "sequence" : "prompt";
    const fixes = [
      "shorten it",
      ...(limit === limits.maxPromptTokens ? ["raise --max-prompt-tokens"] : whole ? [] : ["lower --max-new-tokens"]),
      ...(limits.skipLong === undefined ? [] : ["pass --skip-long to leave such records out"]),
    ];
    const fix = fixes.length > 2 ? `${fixes.slice(0, -1).join(", ")}, or ${fixes.at(-1)}` : fixes.join(" or ");
    throw new UserError(`${prompt.where}: the ${what} is ${length} tokens, over the limit of ${limit} (${reason}); ${fix}`);
  });
  return { keep, longest };
}

/** Estimated peak memory of one compute batch of `sequences` sequences of `tokens` tokens. */
export function batchBytes(model: ModelInfo, sequences: number, tokens: number): number {
  const element = model.dtype === "float32" ? 4 : 2;
  // Per token: its keys and values in every layer, its hidden state through an MLP (a few
  // copies in flight), and its recorded routing (expert id and weight per layer).
  const perToken = model.kvBytesPerToken + 8 * model.hiddenSize * element + model.numLayers * model.topK * 8;
  // Eager attention scores its whole prompt at once, in fp32: heads × tokens² for one layer.
  const scores = model.attentionImplementation === "eager" ? model.attentionHeads * tokens * tokens * 4 : 0;
  return sequences * (tokens * perToken + scores);
}

export interface ComputeFit {
  size: number;
  /** Said in the progress line when the compute batch was shrunk to fit. */
  note?: string;
}

/**
 * The compute batch for sequences of up to `tokens` tokens: `requested`, shrunk until the
 * estimate fits `budget` (bytes; default half of what is free where the model sits). Refused when
 * even `minimum` sequences (an analysis batch travels whole) do not fit.
 */
export async function fitComputeBatch(
  generator: Pick<Generator, "countTokens" | "freeMemory">,
  model: ModelInfo,
  requested: number,
  tokens: number,
  budget: number | undefined,
  minimum = 1,
): Promise<ComputeFit> {
  const free = budget === undefined ? await generator.freeMemory() : null;
  const limit = budget ?? (free === null ? Infinity : free / 2);
  const perSequence = batchBytes(model, 1, tokens);
  const fits = Math.floor(limit / perSequence);
  if (fits < minimum) {
    throw new UserError(
      `${minimum} sequence${minimum > 1 ? "s" : ""} of up to ${tokens} tokens need about ${gb(perSequence * minimum)}, ` +
        `over the memory budget of ${gb(limit)} (${budget === undefined ? "half the free memory; set it with --max-memory" : "--max-memory"}); ` +
        `lower --max-new-tokens${minimum > 1 ? " or --batch-size" : ""} or --max-prompt-tokens`,
    );
  }
  if (fits >= requested) return { size: requested };
  return { size: fits, note: `compute batch ${fits} (of ${requested}) to fit ${gb(limit)}` };
}

/**
 * What every generation pass does before it generates: measure its prompts (MeasuredPrompts.keep),
 * then size the compute batch for the longest one kept. `unit` sequences travel together (an
 * analysis batch): the compute batch is a whole number of units, at least one.
 */
export async function planGeneration(
  generator: Pick<Generator, "countTokens" | "freeMemory">,
  model: ModelInfo,
  prompts: readonly Prompt[],
  limits: PromptLimits,
  compute: { requested: number; maxMemory?: number | undefined; unit?: number },
): Promise<{ keep: boolean[]; fit: ComputeFit }> {
  const { keep, longest } = await measurePrompts(generator, model, prompts, limits);
  const unit = compute.unit ?? 1;
  const fit = await fitComputeBatch(
    generator,
    model,
    Math.max(compute.requested, unit),
    longest,
    compute.maxMemory,
    unit,
  );
  return { keep, fit };
}
