// Steering requests are checked once, here, against the model `load` described.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ModelInfo } from "../src/components/engine/protocol.js";
import { steerRequest } from "../src/components/method/steering.js";

const model = { source: "m", moe_layers: [0, 1], num_experts: 8, top_k: 2 } as ModelInfo;
const refs = (layer: number, experts: number[]) => experts.map((expert) => ({ layer, expert }));

test("steering may leave fewer experts than top-k (as training's routing mask does), never none", () => {
  const allButOne = { deactivate: refs(1, [0, 1, 2, 3, 4, 5, 6]), activate: [] };
  assert.deepEqual(steerRequest(allButOne, model, "steer"), {
    "1": { deactivate: [0, 1, 2, 3, 4, 5, 6], activate: [] },
  });
  const cases: [Parameters<typeof steerRequest>[0], RegExp][] = [
    [{ deactivate: refs(1, [0, 1, 2, 3, 4, 5, 6, 7]), activate: [] }, /layer 1 switches off every expert/],
    [{ deactivate: refs(2, [0]), activate: [] }, /layer 2 is not an MoE layer of m \(0, 1\)/],
    [{ deactivate: [], activate: refs(0, [8]) }, /layer 0 has no expert 8 \(0\.\.7\)/],
    [
      { deactivate: refs(0, [3]), activate: refs(0, [3]) },
      /layer 0 expert 3 is both activated and deactivated/,
    ],
    [{ deactivate: [], activate: refs(0, [1, 2, 3]) }, /activates 3 experts, but only top-2 are used/],
  ];
  for (const [steering, expected] of cases)
    assert.throws(() => steerRequest(steering, model, "steer"), expected);
});
