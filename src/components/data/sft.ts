// The batch-structured SFT dataset: for every kept analysis batch, the same samples in the same
// order, each with an assistant target that refuses. Safe samples keep the model's own refusal;
// unsafe samples get one from the chosen refusal source.
import { z } from "zod";
import { makeRefusal, OpenAIEndpoint } from "../judge/judge.js";
import type { Messages, Sample } from "../domain.js";
import { UserError } from "../errors.js";
import type { SampleRow, SftRow } from "../io/run-files.js";

export const RefusalSource = z.strictObject({
  /** self: the paired safe sample's refusal; template: one fixed sentence; openai: written by an endpoint. */
  source: z.enum(["self", "template", "openai"]).default("self"),
  template: z.string().min(1).default("I'm sorry, but I can't help with that request."),
  endpoint: OpenAIEndpoint.optional(),
});
export type RefusalSource = z.infer<typeof RefusalSource>;

/** The plain request of a pair: the last user message of its safe prompt. */
function plainRequest(messages: Messages): string {
  return messages.findLast((m) => m.role === "user")?.content ?? "";
}

/** What the SFT dataset reads of a generated sample: the sample and the model's response. */
type Answered = Sample & Pick<SampleRow, "text">;

/**
 * `batches`: kept samples per kept batch, in analysis order. `safeByPair`: every generated safe
 * sample, for the `self` source (its partner may sit in another batch when the safe ratio is not 0.5).
 */
export async function buildSftDataset(
  batches: readonly (readonly Answered[])[],
  safeByPair: ReadonlyMap<string, Answered>,
  refusal: RefusalSource,
  cachePath: string,
): Promise<SftRow[]> {
  const unsafe = batches.flat().filter((s) => s.label === "unsafe");
  const targets = new Map<string, string>();
  if (refusal.source === "openai") {
    if (!refusal.endpoint) throw new UserError("refusal source openai needs an endpoint (baseUrl, model)");
    const requests = unsafe.map((s) => plainRequest(safeByPair.get(s.pair_id)?.messages ?? s.messages));
    const written = await makeRefusal(refusal.endpoint, requests, { cachePath });
    unsafe.forEach((s, i) => targets.set(s.sample_id, written[i]!));
  }
  for (const s of unsafe) {
    if (refusal.source === "template") targets.set(s.sample_id, refusal.template);
    if (refusal.source === "self") {
      const partner = safeByPair.get(s.pair_id);
      if (!partner) throw new Error(`sample ${s.sample_id} has no generated safe partner`);
      targets.set(s.sample_id, partner.text);
    }
  }
  return batches.flat().map((s) => ({
    batch_idx: s.batch_idx,
    in_batch_idx: s.in_batch_idx,
    sample_id: s.sample_id,
    pair_id: s.pair_id,
    label: s.label,
    messages: [
      ...s.messages,
      { role: "assistant" as const, content: s.label === "safe" ? s.text : targets.get(s.sample_id)! },
    ],
    target_source: s.label === "safe" ? "model" : refusal.source,
  }));
}
