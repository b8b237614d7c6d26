// Routing shards, written by the engine (engine/steermoe_engine/routing.py) and read back here.
// One safetensors shard holds many samples: for each part (prompt, generation) the samples'
// [tokens, moe_layers, top_k] expert ids are concatenated along tokens, and `<part>.offsets`
// [samples + 1] says where each sample starts. In numpy: ids = f["generation.expert_ids"][off[i]:off[i + 1]].
import { z } from "zod";
import type { NDArray } from "../engine/frames.js";
import { readSafetensors } from "./safetensors.js";
import { UserError } from "../errors.js";

/**
 * The shard format, defined here once: `npm run schemas` writes it for the engine, whose
 * routing.py writes shards by it (engine/steermoe_engine/routing_format.json).
 */
export const SHARD_FORMAT = {
  format: "steermoe.routing.v1",
  parts: ["prompt", "generation"],
  /** Per part: "<part>.<name>"; router_weights only where the router's weights were recorded. */
  tensors: {
    expert_ids: "[tokens, moe_layers, top_k] uint8, or uint16 past uint8_max_experts experts",
    router_weights: "[tokens, moe_layers, top_k] float32",
    offsets: "[samples + 1] int64: sample i is rows offsets[i]:offsets[i + 1]",
  },
  uint8_max_experts: 256,
} as const;
export const PARTS = SHARD_FORMAT.parts;
export type Part = (typeof PARTS)[number];

/** The expert ids of one sample's tokens, per part, flat in [tokens, moe_layers, top_k] order. */
export interface RoutingTrace {
  sampleId: string;
  prompt: Uint8Array | Uint16Array;
  generation: Uint8Array | Uint16Array;
}

export const RoutingLayout = z.object({
  moeLayers: z.array(z.number().int()),
  numExperts: z.number().int().positive(),
  topK: z.number().int().positive(),
});
export type RoutingLayout = z.infer<typeof RoutingLayout>;

/** The shard's safetensors metadata: strings only, lists as compact JSON. */
export const ShardMetadata = z.object({
  format: z.literal(SHARD_FORMAT.format),
  router_weights: z.enum(["yes", "no"]),
  sample_ids: z.string(),
  moe_layers: z.string(),
  num_experts: z.string(),
  top_k: z.string(),
});

/** The expert ids of every sample in the shard (router weights are for readers outside steermoe). */
export function readRoutingShard(path: string): { layout: RoutingLayout; traces: RoutingTrace[] } {
  const { tensors, metadata: raw } = readSafetensors(path, (name) => !name.endsWith(".router_weights"));
  const metadata = ShardMetadata.safeParse(raw);
  if (!metadata.success) throw new UserError(`${path} is not a steermoe routing shard`);
  const layout = RoutingLayout.parse({
    moeLayers: JSON.parse(metadata.data.moe_layers),
    numExperts: Number(metadata.data.num_experts),
    topK: Number(metadata.data.top_k),
  });
  const ids = z.array(z.string()).parse(JSON.parse(metadata.data.sample_ids));
  const get = (name: string): NDArray => {
    const t = tensors[name];
    if (!t) throw new UserError(`${path} lacks the tensor ${name}`);
    return t;
  };
  const width = layout.moeLayers.length * layout.topK;
  const traces = ids.map((sampleId, i) => {
    const trace = { sampleId } as RoutingTrace;
    for (const part of PARTS) {
      const offsets = get(`${part}.offsets`).data as BigInt64Array;
      const [from, to] = [Number(offsets[i]), Number(offsets[i + 1])];
      trace[part] = (get(`${part}.expert_ids`).data as Uint8Array | Uint16Array).subarray(
        from * width,
        to * width,
      );
    }
    return trace;
  });
  return { layout, traces };
}
