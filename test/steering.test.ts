// Steering maps are checked once, here, against the model `load` described, and reach the engine
// as one float32 matrix [decoder layers, experts].
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { ModelInfo } from "../src/components/domain.js";
import { readSteerFile, steerRequest, type Steering } from "../src/components/method/steering.js";
import { writeNpy } from "../src/components/io/tables.js";
import { tempDir } from "./helpers.js";

const model = { source: "m", numLayers: 3, moeLayers: [0, 1], numExperts: 8, topK: 2 } as ModelInfo;
const at = (layer: number, experts: number[], bias: Steering["biases"][number]["bias"]) =>
  experts.map((expert) => ({ layer, expert, bias }));

test("a map becomes the engine's bias matrix; intensity scales it, ±inf stay ±inf", () => {
  const steering = {
    biases: [...at(1, [0, 1, 2, 3, 4, 5, 6], "-inf"), ...at(0, [3], 1.5), ...at(0, [5], "inf")],
  };
  const request = steerRequest(steering, model, "steer", 2);
  assert.deepEqual(request.shape, [3, 8]);
  const data = request.data as Float32Array;
  const rows = [0, 1, 2].map((l) => Array.from(data.slice(l * 8, (l + 1) * 8)));
  assert.deepEqual(rows, [
    [0, 0, 0, 3, 0, Infinity, 0, 0],
    [-Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, 0],
    [0, 0, 0, 0, 0, 0, 0, 0],
  ]);
});

test("bad maps get one line: fewer than top-k left is allowed, none is not", () => {
  const cases: [Steering["biases"], RegExp][] = [
    [at(1, [0, 1, 2, 3, 4, 5, 6, 7], "-inf"), /layer 1 switches off every expert/],
    [at(2, [0], -1), /layer 2 is not an MoE layer of m \(0, 1\)/],
    [at(0, [8], "inf"), /layer 0 has no expert 8 \(0\.\.7\)/],
    [[...at(0, [3], "-inf"), ...at(0, [3], 0.5)], /layer 0 expert 3 is given twice/],
    [at(0, [1, 2, 3], "inf"), /activates 3 experts, but only top-2 are used/],
  ];
  for (const [biases, expected] of cases)
    assert.throws(() => steerRequest({ biases }, model, "steer"), expected);
  assert.throws(() => steerRequest({ biases: [] }, model, "steer", 0), /intensity 0 must be > 0/);
  // A router that picks 2 of 4 groups of 2 experts (DeepSeek-V3's rule) before its experts: forced
  // experts in 2 groups are used; in 3 they could not all be.
  const grouped = { ...model, topK: 4, expertGroups: [4, 2] } as ModelInfo;
  assert.doesNotThrow(() => steerRequest({ biases: at(0, [0, 1, 6], "inf") }, grouped, "steer"));
  assert.throws(
    () => steerRequest({ biases: at(0, [0, 3, 6], "inf") }, grouped, "steer"),
    /steer: layer 0 activates experts 0, 3, 6 in 3 expert groups, but the router uses 2 of its 4 groups per token$/,
  );
});

test("steering files: .npy matrices, exported maps and on/off lists read as one map", (t) => {
  const dir = tempDir(t);
  const npy = join(dir, "map.npy");
  const matrix = new Float32Array(3 * 8);
  matrix[1 * 8 + 2] = -0.75;
  matrix[0 * 8 + 4] = -Infinity;
  writeNpy(npy, matrix, [3, 8]);
  assert.deepEqual(readSteerFile(npy).biases, [
    { layer: 0, expert: 4, bias: "-inf" },
    { layer: 1, expert: 2, bias: -0.75 },
  ]);
  const onOff = join(dir, "on-off.json");
  writeFileSync(
    onOff,
    JSON.stringify({ deactivate: [{ layer: 0, expert: 1 }], activate: [{ layer: 1, expert: 0 }] }),
  );
  assert.deepEqual(readSteerFile(onOff).biases, [
    { layer: 0, expert: 1, bias: "-inf" },
    { layer: 1, expert: 0, bias: "inf" },
  ]);
  const bad = join(dir, "bad.json");
  writeFileSync(
    bad,
    JSON.stringify({ format: "steermoe steering map", biases: [{ layer: 0, expert: 1, bias: "big" }] }),
  );
  assert.throws(() => readSteerFile(bad), /bad\.json field biases\.0\.bias/);
});

test("a map made for another layout is refused, never read cell by cell; a bias entry has no other keys", (t) => {
  const dir = tempDir(t);
  // The model is 3 layers × 8 experts: .npy maps of other shapes, whatever their cells.
  for (const shape of [
    [3, 4],
    [6, 8],
    [2, 8],
    [3, 16],
  ]) {
    const npy = join(dir, `map-${shape.join("x")}.npy`);
    const cells = new Float32Array(shape[0]! * shape[1]!);
    cells[1] = -1;
    writeNpy(npy, cells, shape);
    assert.throws(
      () => steerRequest(readSteerFile(npy), model, "--steer"),
      new RegExp(
        `^UserError: --steer: the map \\(.*${shape.join("x")}\\.npy\\) is for ${shape[0]} layers × ${shape[1]} experts, but m has 3 × 8$`,
      ),
    );
  }
  // An exported map's header says what it was made for: another model's is refused, even where
  // each of its experts would exist here.
  const exported = join(dir, "exported.json");
  const header = { format: "steermoe steering map", model: "allenai/OLMoE", num_layers: 16, num_experts: 64 };
  writeFileSync(
    exported,
    JSON.stringify({ ...header, moe_layers: [0], biases: [{ layer: 0, expert: 1, bias: -2 }] }),
  );
  assert.throws(
    () => steerRequest(readSteerFile(exported), model, "steer"),
    /is for 16 layers × 64 experts, but m has 3 × 8/,
  );
  writeFileSync(
    exported,
    JSON.stringify({ ...header, num_layers: 3, num_experts: 8, biases: [{ layer: 0, expert: 1, bias: -2 }] }),
  );
  assert.doesNotThrow(() => steerRequest(readSteerFile(exported), model, "steer"));
  const extra = join(dir, "extra.json");
  writeFileSync(extra, JSON.stringify({ biases: [{ layer: 0, expert: 1, bias: -2, scale: 10 }] }));
  assert.throws(
    () => readSteerFile(extra),
    /extra\.json field biases\.0: unrecognized key "scale"|extra\.json.*scale/,
  );
});
