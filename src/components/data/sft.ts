// The batch-structured SFT dataset: for every kept analysis batch, the same samples in the same
// order, each with an assistant target that refuses. Safe samples keep the model's own refusal;
// unsafe samples get one from the chosen refusal source.
import { z } from "zod";
import { makeRefusal, OpenAIEndpoint } from "../judge/judge.js";
import type { Messages } from "../domain.js";
import { UserError } from "../errors.js";
import type { SftRow } from "../io/run-files.js";

export const RefusalSource = z.strictObject({
  /** self: the paired safe sample's refusal; template: one fixed sentence; openai: written by an endpoint. */
  source: z.enum(["self", "template", "openai"]).default("self"),
  template: z.string().min(1).default("I'm sorry, but I can't help with that request."),
  endpoint: OpenAIEndpoint.optional(),
});
export type RefusalSource = z.infer<typeof RefusalSource>;

export interface SftSample {
  sampleId: string;
  pairId: string;
  batchIdx: number;
  inBatchIdx: number;
  label: "safe" | "unsafe";
  messages: Messages;
  /** The model's response during analysis. */
  response: string;
}

/** The plain request of a pair: the last user message of its safe prompt. */
function plainRequest(messages: Messages): string {
  return messages.findLast((m) => m.role === "user")?.content ?? "";
}

/**
 * `batches`: kept samples per kept batch, in analysis order. `safeByPair`: every generated safe
 * sample, for the `self` source (its partner may sit in another batch when the safe ratio is not 0.5).
 */
export async function buildSftDataset(
  batches: readonly (readonly SftSample[])[],
  safeByPair: ReadonlyMap<string, SftSample>,
  refusal: RefusalSource,
  cachePath: string,
): Promise<SftRow[]> {
  const unsafe = batches.flat().filter((s) => s.label === "unsafe");
  const targets = new Map<string, string>();
  if (refusal.source === "openai") {
    if (!refusal.endpoint) throw new UserError("refusal source openai needs an endpoint (baseUrl, model)");
    const requests = unsafe.map((s) => plainRequest(safeByPair.get(s.pairId)?.messages ?? s.messages));
    const written = await makeRefusal(refusal.endpoint, requests, { cachePath });
    unsafe.forEach((s, i) => targets.set(s.sampleId, written[i]!));
  }
  for (const s of unsafe) {
    if (refusal.source === "template") targets.set(s.sampleId, refusal.template);
    if (refusal.source === "self") {
      const partner = safeByPair.get(s.pairId);
      if (!partner) throw new Error(`sample ${s.sampleId} has no generated safe partner`);
      targets.set(s.sampleId, partner.response);
    }
  }
  return batches.flat().map((s) => ({
    batch_idx: s.batchIdx,
    in_batch_idx: s.inBatchIdx,
    sample_id: s.sampleId,
    pair_id: s.pairId,
    label: s.label,
    messages: [
      ...s.messages,
      { role: "assistant" as const, content: s.label === "safe" ? s.response : targets.get(s.sampleId)! },
    ],
    target_source: s.label === "safe" ? "model" : refusal.source,
  }));
}
