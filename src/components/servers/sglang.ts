// SGLang 0.5.23 (`python -m sglang.launch_server --model-path M --enable-return-routed-experts`):
// POST /generate with input_ids and return_routed_experts; `output_ids` are the generated ids and
// `meta_info.routed_experts` is base64 of the raw little-endian int32 bytes of the flattened
// [rows, num_hidden_layers, top_k] array (detokenizer_manager.py), rows covering positions
// routed_experts_start_len … prompt + generated − 2. Newer servers choose the wire dtype
// (SGLANG_ROUTED_EXPERTS_DTYPE: int32, uint16 or uint8) and name it in
// `meta_info.routed_experts_dtype`; without that field it is int32.
import { z } from "zod";
import { zodProblem } from "../errors.js";
import type { Completion, Flavour, ServerRouting } from "./routing.js";

const Output = z.object({
  output_ids: z.array(z.number().int().min(0)),
  meta_info: z.object({
    routed_experts: z.string().nullish(),
    routed_experts_dtype: z.enum(["int32", "uint16", "uint8"]).nullish(),
  }),
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
      routing: o.meta_info.routed_experts
        ? decodeRouting(o.meta_info.routed_experts, layout, o.meta_info.routed_experts_dtype ?? "int32")
        : null,
    }));
  },
};

const WIRE = {
  int32: { size: 4, read: (b: Buffer, at: number) => b.readInt32LE(at) },
  uint16: { size: 2, read: (b: Buffer, at: number) => b.readUInt16LE(at) },
  uint8: { size: 1, read: (b: Buffer, at: number) => b.readUInt8(at) },
};

/** base64 of raw little-endian ids of `dtype`, flattened [rows, layers, topK] → routing. */
export function decodeRouting(
  base64: string,
  layout: { layers: number; topK: number },
  dtype: keyof typeof WIRE,
): ServerRouting {
  const bytes = Buffer.from(base64, "base64");
  const { size, read } = WIRE[dtype];
  const width = layout.layers * layout.topK;
  if (bytes.length % (size * width) !== 0)
    throw new Error(
      `routed_experts holds ${bytes.length} bytes, not a whole number of ${dtype} [${layout.layers}, ${layout.topK}] rows`,
    );
  const ids = Int32Array.from({ length: bytes.length / size }, (_, i) => read(bytes, size * i));
  return { rows: ids.length / width, ...layout, ids };
}
