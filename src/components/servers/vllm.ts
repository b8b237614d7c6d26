// vLLM 0.32.0 (`vllm serve MODEL --enable-return-routed-experts`): POST /v1/completions with token
// ids; each choice carries `token_ids` (with return_token_ids) and `routed_experts`, base64 of
// the .npy bytes of a [rows, num_hidden_layers, top_k] uint8/uint16 array (np.save in
// vllm/utils/serial_utils.py numpy2base64), rows covering positions routed_experts_prompt_start …
// prompt + generated − 2: the last generated token has not been forwarded yet.
import { z } from "zod";
import { zodProblem } from "../errors.js";
import { parseNpy } from "../io/tables.js";
import type { Completion, Flavour, ServerRouting } from "./routing.js";

const Reply = z.object({
  choices: z
    .array(
      z.object({
        index: z.number().int().min(0),
        token_ids: z.array(z.number().int().min(0)).nullish(),
        routed_experts: z.string().nullish(),
      }),
    )
    .min(1),
});

const Models = z.object({ data: z.array(z.object({ id: z.string(), root: z.string().nullish() })).min(1) });

export const vllm: Flavour = {
  name: "vllm",
  pinned: "0.32.0",
  routingFlag: "--enable-return-routed-experts",
  completionPath: "/v1/completions",
  async identify(get) {
    const version = z.object({ version: z.string() }).parse(await get("/version")).version;
    const models = Models.parse(await get("/v1/models")).data.map((m) => ({
      request: m.id,
      names: [m.id, ...(m.root ? [m.root] : [])],
    }));
    return { version, models };
  },
  body: (r) => ({
    model: r.model,
    prompt: r.prompt,
    max_tokens: r.maxTokens,
    n: 1,
    // Explicit, or the server takes the model's generation_config.json defaults.
    temperature: r.sampling.temperature,
    top_p: r.sampling.topP,
    top_k: -1,
    seed: r.seed,
    return_token_ids: true,
    // Every choice carries routing when the server has it on: ask for the fewest rows when unwanted.
    routed_experts_prompt_start: r.routingStart ?? r.prompt.length,
  }),
  parse(reply) {
    const parsed = Reply.safeParse(reply);
    if (!parsed.success) throw new Error(`not a vLLM completion (${zodProblem(parsed.error)})`);
    return [...parsed.data.choices]
      .sort((a, b) => a.index - b.index)
      .map((choice): Completion => {
        if (!choice.token_ids)
          throw new Error("the completion has no token_ids (return_token_ids needs vLLM ≥ 0.10)");
        return {
          generated: choice.token_ids,
          routing: choice.routed_experts ? decodeNpy(choice.routed_experts) : null,
        };
      });
  },
};

const NPY_DTYPES: Record<string, (bytes: Buffer) => Int32Array> = {
  "|u1": (b) => Int32Array.from(b),
  "<u2": (b) => Int32Array.from({ length: b.length / 2 }, (_, i) => b.readUInt16LE(2 * i)),
  "<i4": (b) => Int32Array.from({ length: b.length / 4 }, (_, i) => b.readInt32LE(4 * i)),
};

/** base64 of .npy bytes → routing. */
export function decodeNpy(base64: string): ServerRouting {
  let npy;
  try {
    npy = parseNpy(Buffer.from(base64, "base64"));
  } catch (err) {
    throw new Error(`routed_experts: ${(err as Error).message}`, { cause: err });
  }
  const read = NPY_DTYPES[npy.descr];
  if (!read) throw new Error(`routed_experts is ${npy.descr}, not uint8, uint16 or int32`);
  if (npy.shape.length !== 3)
    throw new Error(`routed_experts has shape (${npy.shape}), not (tokens, layers, top_k)`);
  const [rows, layers, topK] = npy.shape as [number, number, number];
  const ids = read(npy.body);
  if (ids.length !== rows * layers * topK)
    throw new Error(
      `routed_experts holds ${ids.length} ids, its shape (${npy.shape}) says ${rows * layers * topK}`,
    );
  return { rows, layers, topK, ids };
}
