import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeFrame, FrameDecoder, ndarray, type NDArray } from "../src/components/engine/frames.js";

test("a frame with arrays survives any chunking of the stream", () => {
  const message = {
    id: 7,
    nested: { ids: ndarray(new Uint8Array([1, 2, 3, 4, 5, 6]), [2, 3]), note: "é ✓" },
    list: [ndarray(new Float32Array([0.5, -1.25]), [2]), ndarray(new BigInt64Array([1n, 2n ** 40n]), [2])],
  };
  const bytes = Buffer.concat([...encodeFrame(message), ...encodeFrame({ id: 8 })]);
  for (const size of [1, 3, 7, 64, bytes.length]) {
    const decoder = new FrameDecoder();
    const out: unknown[] = [];
    for (let i = 0; i < bytes.length; i += size) out.push(...decoder.push(bytes.subarray(i, i + size)));
    assert.equal(out.length, 2, `chunk size ${size}`);
    const first = out[0] as { id: number; nested: { ids: NDArray; note: string }; list: NDArray[] };
    assert.equal(first.id, 7);
    assert.equal(first.nested.note, "é ✓");
    assert.deepEqual(first.nested.ids.shape, [2, 3]);
    assert.deepEqual(Array.from(first.nested.ids.data as Uint8Array), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(Array.from(first.list[0]!.data as Float32Array), [0.5, -1.25]);
    assert.deepEqual(Array.from(first.list[1]!.data as BigInt64Array), [1n, 2n ** 40n]);
    assert.deepEqual(out[1], { id: 8 });
  }
});

test("ndarray refuses a shape that does not fit its data", () => {
  assert.throws(() => ndarray(new Uint8Array(5), [2, 3]), /needs 6 values, got 5/);
});
