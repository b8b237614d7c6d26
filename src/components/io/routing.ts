// RoutingTraces on disk. One safetensors shard holds many samples: for each part (prompt,
// generation) the samples' [tokens, moe_layers, top_k] expert ids and router weights are
// concatenated along tokens, and `<part>.offsets` [samples + 1] says where each sample starts.
// In numpy: ids = f["generation.expert_ids"][off[i]:off[i + 1]].
import { z } from "zod";
import { DTYPES, ndarray, type NDArray } from "../engine/frames.js";
import type { RoutingPart } from "../engine/protocol.js";
import { readSafetensors, writeSafetensors } from "./safetensors.js";
import { UserError } from "../errors.js";

export const ROUTING_FORMAT = "steermoe.routing.v1";
export const PARTS = ["prompt", "generation"] as const;
export type Part = (typeof PARTS)[number];

export interface RoutingTrace {
  sampleId: string;
  prompt: RoutingPart;
  generation: RoutingPart;
}

export const RoutingLayout = z.object({
  moeLayers: z.array(z.number().int()),
  numExperts: z.number().int().positive(),
  topK: z.number().int().positive(),
});
export type RoutingLayout = z.infer<typeof RoutingLayout>;

function concat(arrays: NDArray[], rowShape: number[], dtype: "uint8" | "uint16" | "float32"): NDArray {
  const rows = arrays.reduce((n, a) => n + (a.shape[0] ?? 0), 0);
  const out = new DTYPES[dtype](rows * rowShape.reduce((a, b) => a * b, 1));
  let at = 0;
  for (const a of arrays) {
    out.set(a.data as typeof out, at);
    at += a.data.length;
  }
  return ndarray(out, [rows, ...rowShape], dtype);
}

export function writeRoutingShard(path: string, traces: RoutingTrace[], layout: RoutingLayout): void {
  const row = [layout.moeLayers.length, layout.topK];
  const idDtype = layout.numExperts <= 256 ? "uint8" : "uint16";
  const tensors: Record<string, NDArray> = {};
  for (const part of PARTS) {
    const pieces = traces.map((t) => t[part]);
    const offsets = new BigInt64Array(traces.length + 1);
    pieces.forEach((p, i) => (offsets[i + 1] = offsets[i]! + BigInt(p.expert_ids.shape[0] ?? 0)));
    tensors[`${part}.expert_ids`] = concat(
      pieces.map((p) => p.expert_ids),
      row,
      idDtype,
    );
    tensors[`${part}.router_weights`] = concat(
      pieces.map((p) => p.weights),
      row,
      "float32",
    );
    tensors[`${part}.offsets`] = ndarray(offsets, [traces.length + 1]);
  }
  writeSafetensors(path, tensors, {
    format: ROUTING_FORMAT,
    sample_ids: JSON.stringify(traces.map((t) => t.sampleId)),
    moe_layers: JSON.stringify(layout.moeLayers),
    num_experts: String(layout.numExperts),
    top_k: String(layout.topK),
  });
}

function slice(a: NDArray, from: number, to: number): NDArray {
  const width = a.shape.slice(1).reduce((x, y) => x * y, 1);
  return ndarray(a.data.subarray(from * width, to * width), [to - from, ...a.shape.slice(1)], a.dtype);
}

export function readRoutingShard(path: string): { layout: RoutingLayout; traces: RoutingTrace[] } {
  const { tensors, metadata } = readSafetensors(path);
  if (metadata.format !== ROUTING_FORMAT) throw new UserError(`${path} is not a steermoe routing shard`);
  const layout = RoutingLayout.parse({
    moeLayers: JSON.parse(metadata.moe_layers ?? "null"),
    numExperts: Number(metadata.num_experts),
    topK: Number(metadata.top_k),
  });
  const ids = z.array(z.string()).parse(JSON.parse(metadata.sample_ids ?? "null"));
  const get = (name: string): NDArray => {
    const t = tensors[name];
    if (!t) throw new UserError(`${path} lacks the tensor ${name}`);
    return t;
  };
  const traces = ids.map((sampleId, i) => {
    const trace = { sampleId } as RoutingTrace;
    for (const part of PARTS) {
      const offsets = get(`${part}.offsets`).data as BigInt64Array;
      const [from, to] = [Number(offsets[i]), Number(offsets[i + 1])];
      trace[part] = {
        expert_ids: slice(get(`${part}.expert_ids`), from, to),
        weights: slice(get(`${part}.router_weights`), from, to),
      };
    }
    return trace;
  });
  return { layout, traces };
}
