// Routed experts as vLLM 0.32.0 and SGLang 0.5.23 encode them, decoded by steermoe. The payloads
// are made in Python by the servers' own encoding code (vllm/utils/serial_utils.py numpy2base64;
// SGLang's detokenizer: base64 of tensor.numpy().tobytes(), int32), independently of the decoders.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { expertRows } from "../src/components/servers/routing.js";
import { sglang } from "../src/components/servers/sglang.js";
import { vllm } from "../src/components/servers/vllm.js";
import { PYTHON } from "./helpers.js";

const FIXTURES = String.raw`
import base64, io, json
import numpy as np

def numpy2base64(array):  # vllm/utils/serial_utils.py, verbatim but for pybase64
    with io.BytesIO() as buffer:
        np.save(buffer, array, allow_pickle=False)
        return base64.b64encode(buffer.getbuffer()).decode("ascii")

def sglang_b64(array, dtype=np.int32):  # detokenizer_manager.py: raw bytes, flattened
    return base64.b64encode(array.astype(dtype).tobytes()).decode("utf-8")

rng = np.random.default_rng(0)
def routing(rows, layers, top_k, experts, dense=()):
    ids = rng.integers(0, experts, size=(rows, layers, top_k))
    ids[:, list(dense)] = 0  # the servers' buffers start at zero; dense layers never write
    return ids

out = {}
# 300 experts: vLLM sends uint16; a dense first layer; 5 prompt + 3 generated tokens -> 7 rows.
a = routing(7, 3, 2, 300, dense=[0])
out["u16"] = {"ids": a.tolist(), "vllm": numpy2base64(a.astype(np.uint16)), "sglang": sglang_b64(a)}
# 8 experts: uint8; positions 4.. only (routed_experts_prompt_start = 4).
b = routing(7, 3, 2, 8, dense=[0])
out["start"] = {"ids": b[4:].tolist(), "vllm": numpy2base64(b[4:].astype(np.uint8)), "sglang": sglang_b64(b[4:])}
# Newer SGLang servers: the wire dtype SGLANG_ROUTED_EXPERTS_DTYPE chose.
out["narrow"] = {"ids": a.tolist(), "uint16": sglang_b64(a, np.uint16), "uint8": sglang_b64(b, np.uint8), "ids8": b.tolist()}
# -1 rows: int32 with a row the server did not record.
c = routing(4, 3, 2, 8, dense=[0]); c[2, 1:] = -1
out["minus"] = {"vllm": numpy2base64(c.astype(np.int32)), "sglang": sglang_b64(c)}
# Dense layer with a non-zero id: not the model the client thinks.
d = routing(3, 3, 2, 8, dense=[0]); d[1, 0, 0] = 5
out["dense"] = {"vllm": numpy2base64(d.astype(np.uint8))}
print(json.dumps(out))
`;

interface Fixture {
  ids: number[][][];
  vllm: string;
  sglang: string;
}
const run = spawnSync(PYTHON, ["-c", FIXTURES], { encoding: "utf8" });
assert.equal(run.status, 0, run.stderr);
const fx = JSON.parse(run.stdout) as Record<string, Fixture>;

const model = (experts: number) => ({ numLayers: 3, moeLayers: [1, 2], topK: 2, numExperts: experts });
const layout = { layers: 3, topK: 2 };
/** What the shard should hold: the MoE layers' ids, flat [tokens, moe_layers, top_k]. */
const moeOnly = (ids: number[][][]) => ids.flatMap((row) => row.slice(1).flat());

const vllmReply = (routed: string | null, tokenIds = [7, 8, 9]) => ({
  id: "cmpl-1",
  object: "text_completion",
  choices: [
    {
      index: 0,
      text: "…",
      finishReason: "length",
      token_ids: tokenIds,
      prompt_token_ids: [1, 2, 3, 4, 5],
      routed_experts: routed,
    },
  ],
});
const sglangReply = (routed?: string, dtype?: string) => ({
  text: "…",
  output_ids: [7, 8, 9],
  meta_info: {
    id: "x",
    finishReason: { type: "length", length: 3 },
    ...(routed && { routed_experts: routed }),
    ...(dtype && { routed_experts_dtype: dtype }),
  },
});

test("SGLang's narrower wire dtypes, as meta_info.routed_experts_dtype names them", () => {
  const narrow = fx.narrow as unknown as Record<string, string> & { ids: number[][][]; ids8: number[][][] };
  const u16 = sglang.parse(sglangReply(narrow.uint16, "uint16"), layout)[0]!;
  assert.deepEqual(Array.from(expertRows(u16.routing!, 7, model(300))), moeOnly(narrow.ids));
  const u8 = sglang.parse(sglangReply(narrow.uint8, "uint8"), layout)[0]!;
  assert.deepEqual(Array.from(expertRows(u8.routing!, 7, model(8))), moeOnly(narrow.ids8));
  // Read as the int32 the field's absence means, the same bytes are not whole rows.
  assert.throws(() => sglang.parse(sglangReply(narrow.uint8), layout), /not a whole number of int32/);
});

test("uint16 ids (more than 256 experts) and a dense first layer, from both servers", () => {
  const [fromVllm] = vllm.parse(vllmReply(fx.u16!.vllm), layout);
  const [fromSglang] = sglang.parse(sglangReply(fx.u16!.sglang), layout);
  for (const completion of [fromVllm!, fromSglang!]) {
    assert.deepEqual(completion.generated, [7, 8, 9]);
    const rows = expertRows(completion.routing!, 7, model(300));
    assert.ok(rows instanceof Uint16Array);
    assert.deepEqual(Array.from(rows), moeOnly(fx.u16!.ids));
    assert.ok(Array.from(rows).some((id) => id > 255));
  }
});

test("a non-zero prompt start: the rows are the positions from the start on", () => {
  for (const completion of [
    vllm.parse(vllmReply(fx.start!.vllm), layout)[0]!,
    sglang.parse(sglangReply(fx.start!.sglang), layout)[0]!,
  ]) {
    const rows = expertRows(completion.routing!, 3, model(8));
    assert.ok(rows instanceof Uint8Array);
    assert.deepEqual(Array.from(rows), moeOnly(fx.start!.ids));
  }
});

test("−1 rows, an extra trailing row, a dense layer routed, an id out of range: each is an error", () => {
  for (const completion of [
    vllm.parse(vllmReply(fx.minus!.vllm), layout)[0]!,
    sglang.parse(sglangReply(fx.minus!.sglang), layout)[0]!,
  ]) {
    assert.throws(() => expertRows(completion.routing!, 4, model(8)), /token row 2 has no routing \(−1\)/);
  }
  const u16 = vllm.parse(vllmReply(fx.u16!.vllm), layout)[0]!.routing!;
  // 7 rows where 6 were due (the server sent the last token's row too, or the count is off).
  assert.throws(() => expertRows(u16, 6, model(300)), /routing has 7 token rows, expected 6/);
  // A model with fewer experts than the ids say.
  assert.throws(() => expertRows(u16, 7, model(8)), /expert id \d+, outside 0…7/);
  const dense = vllm.parse(vllmReply(fx.dense!.vllm), layout)[0]!.routing!;
  assert.throws(() => expertRows(dense, 3, model(8)), /dense layer 0 has expert id 5 at token row 1/);
  // Layer or top-k counts that are not the model's.
  assert.throws(
    () => expertRows(u16, 7, { ...model(300), numLayers: 4 }),
    /3 layers × top-2, the model 4 layers/,
  );
  // SGLang's flat bytes must be whole rows of the model's layout.
  assert.throws(
    () => sglang.parse(sglangReply(fx.u16!.sglang), { layers: 5, topK: 2 }),
    /not a whole number/,
  );
});

test("the routing field missing (server started without the flag) is no routing, not an error here", () => {
  assert.equal(vllm.parse(vllmReply(null), layout)[0]!.routing, null);
  const noField: Record<string, unknown> = { ...vllmReply(null).choices[0]! };
  delete noField.routed_experts;
  assert.equal(vllm.parse({ choices: [noField] }, layout)[0]!.routing, null);
  assert.equal(sglang.parse(sglangReply(), layout)[0]!.routing, null);
});

test("n > 1 choices come back in choice order; SGLang's batch reply is a list", () => {
  const one = vllmReply(fx.start!.vllm, [1]).choices[0]!;
  const two = { ...vllmReply(fx.u16!.vllm, [2, 2]).choices[0]!, index: 1 };
  const parsed = vllm.parse({ choices: [two, one] }, layout);
  assert.deepEqual(
    parsed.map((c) => [c.generated, c.routing!.rows]),
    [
      [[1], 3],
      [[2, 2], 7],
    ],
  );
  const batch = sglang.parse([sglangReply(fx.start!.sglang), sglangReply()], layout);
  assert.deepEqual(
    batch.map((c) => c.routing?.rows ?? null),
    [3, null],
  );
});

test("replies that are not the server's format are named as such", () => {
  assert.throws(() => vllm.parse({ detail: "Not Found" }, layout), /not a vLLM completion \(field choices/);
  assert.throws(() => sglang.parse({ choices: [] }, layout), /not an SGLang \/generate reply/);
  assert.throws(() => vllm.parse(vllmReply("bm90IG5weQ=="), layout), /routed_experts: not an \.npy file/);
  const withoutIds = vllmReply(fx.start!.vllm);
  withoutIds.choices[0]!.token_ids = null as unknown as number[];
  assert.throws(() => vllm.parse(withoutIds, layout), /no token_ids/);
});
