// SGLang 0.5.23 (`python -m sglang.launch_server --model-path M --enable-return-routed-experts`):
// POST /generate with input_ids and return_routed_experts; `output_ids` are the generated ids and
// `meta_info.routed_experts` is base64 of the raw little-endian int32 bytes of the flattened
// [rows, num_hidden_layers, top_k] array (detokenizer_manager.py), rows covering positions
// routed_experts_start_len … prompt + generated − 2.
import { z } from "zod";
import { zodProblem } from "../errors.js";
import type { Completion, Flavour, ServerRouting } from "./routing.js";

const Output = z.object({
  output_ids: z.array(z.number().int().min(0)),
  meta_info: z.object({ routed_experts: z.string().nullish() }),
});
const Reply = z.union([Output.transform((o) => [o]), z.array(Output).min(1)]);

export const sglang: Flavour = {
  name: "sglang",
  pinned: "0.5.23",
  routingFlag: "--enable-return-routed-experts",
  completionPath: "/generate",
  async identify(get) {
    // SGLang has no /version: the version is in /server_info.
    const version = z.object({ version: z.string() }).parse(await get("/server_info")).version;
    const info = z
      .object({ model_path: z.string(), served_model_name: z.string().nullish() })
      .parse(await get("/model_info"));
    const served = info.served_model_name ?? info.model_path;
    return { version, models: [{ request: served, names: [served, info.model_path] }] };
  },
  body: (r) => ({
    input_ids: r.prompt,
    sampling_params: {
      max_new_tokens: r.maxTokens,
      temperature: r.sampling.temperature,
      top_p: r.sampling.topP,
      top_k: -1,
      // SGLang's default (flashinfer) sampler refuses a seed; greedy decoding needs none.
      ...(r.sampling.temperature > 0 && { sampling_seed: r.seed }),
    },
    return_routed_experts: r.routingStart !== undefined,
    ...(r.routingStart !== undefined && { routed_experts_start_len: r.routingStart }),
    stream: false,
  }),
  parse(reply, layout) {
    const parsed = Reply.safeParse(reply);
    if (!parsed.success) throw new Error(`not an SGLang /generate reply (${zodProblem(parsed.error)})`);
    return parsed.data.map((o): Completion => ({
      generated: o.output_ids,
      routing: o.meta_info.routed_experts ? decodeInt32(o.meta_info.routed_experts, layout) : null,
    }));
  },
};

/** base64 of raw little-endian int32 bytes, flattened [rows, layers, topK] → routing. */
export function decodeInt32(base64: string, layout: { layers: number; topK: number }): ServerRouting {
  const bytes = Buffer.from(base64, "base64");
  const width = layout.layers * layout.topK;
  if (bytes.length % (4 * width) !== 0)
    throw new Error(
      `routed_experts holds ${bytes.length} bytes, not a whole number of int32 [${layout.layers}, ${layout.topK}] rows`,
    );
  const ids = Int32Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readInt32LE(4 * i));
  return { rows: ids.length / width, ...layout, ids };
}
