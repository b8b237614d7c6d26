// What every inference server flavour shares: the requests steermoe makes, the routing a server
// returns, and the checks that turn it into routing-shard rows.
import type { Sampling } from "../engine/client.js";
import type { ModelInfo } from "../domain.js";

/** Expert ids as a server returned them: [rows, layers, topK] over all decoder layers, int32. */
export interface ServerRouting {
  rows: number;
  layers: number;
  topK: number;
  ids: Int32Array;
}

/** One completion; `routing` is null when the server sent none (started without routed experts). */
export interface Completion {
  generated: number[];
  routing: ServerRouting | null;
}

export interface CompletionRequest {
  /** The name the server serves the model under. */
  model: string;
  prompt: number[];
  maxTokens: number;
  sampling: Sampling;
  seed: number;
  /** Routing from this prompt position on (rows for positions start … end − 1); none when undefined. */
  routingStart?: number;
}

/** A model a server serves: the name to request it by, and every name it answers to (id, path). */
export interface ServedModel {
  request: string;
  names: string[];
}

/** A server flavour: where to ask, how to ask, how to read the answer, as its pinned version does. */
export interface Flavour {
  name: "vllm" | "sglang";
  /** The version whose sources the request and routing formats follow. */
  pinned: string;
  /** How to start the server so that it returns routing. */
  routingFlag: string;
  completionPath: string;
  identify(get: (path: string) => Promise<unknown>): Promise<{ version: string; models: ServedModel[] }>;
  body(request: CompletionRequest): object;
  /** The completions of a reply, in choice order; `layout` reshapes flat routing. Throws Error on a malformed reply. */
  parse(reply: unknown, layout: { layers: number; topK: number }): Completion[];
}

/**
 * The routing of `expected` consecutive tokens, cut to the MoE layers: [tokens, moeLayers, topK]
 * in the shard's dtype. Every count is checked; dense layers must be all zero (the servers' buffers
 * start at zero and only MoE layers write them), and every MoE id must be an expert of the model
 * (−1 marks rows a server no longer held, evicted from its routed-experts store). Throws Error naming the problem.
 */
export function expertRows(
  routing: ServerRouting,
  expected: number,
  model: Pick<ModelInfo, "numLayers" | "moeLayers" | "topK" | "numExperts">,
): Uint8Array | Uint16Array {
  const { rows, layers, topK, ids } = routing;
  if (layers !== model.numLayers || topK !== model.topK)
    throw new Error(
      `routing has ${layers} layers × top-${topK}, the model ${model.numLayers} layers × top-${model.topK}`,
    );
  if (rows !== expected) throw new Error(`routing has ${rows} token rows, expected ${expected}`);
  const moe = new Set(model.moeLayers);
  const out = new (model.numExperts <= 256 ? Uint8Array : Uint16Array)(rows * moe.size * topK);
  let at = 0;
  for (let row = 0; row < rows; row++) {
    for (let layer = 0; layer < layers; layer++) {
      for (let k = 0; k < topK; k++) {
        const id = ids[(row * layers + layer) * topK + k]!;
        if (!moe.has(layer)) {
          if (id !== 0) throw new Error(`dense layer ${layer} has expert id ${id} at token row ${row}`);
        } else if (id === -1) {
          throw new Error(
            `token row ${row} has no routing (−1): the server's routed-experts store no longer held it (vLLM keys it by KV block hash and evicts past the max_bytes of --aux-output-config); raise that limit or send fewer requests at once`,
          );
        } else if (id < 0 || id >= model.numExperts) {
          throw new Error(
            `layer ${layer} token row ${row} has expert id ${id}, outside 0…${model.numExperts - 1}`,
          );
        } else out[at++] = id;
      }
    }
  }
  return out;
}
