// The casing boundary: camelCase in TypeScript, snake_case in the JSON the engine and pandas see.
import assert from "node:assert/strict";
import { test } from "node:test";
import { z } from "zod";
import { snakeCase } from "../src/components/io/casing.js";
import { ModelInfo } from "../src/components/domain.js";

const Example = snakeCase(
  z.object({
    numLayers: z.number(),
    sharedExperts: z.record(z.string(), z.array(z.string())),
    parameters: z.object({ oneExpert: z.number() }),
    batches: z.array(z.object({ sampleIds: z.array(z.string()) })),
  }),
);

test("snake_case JSON parses to camelCase and encodes back to the same JSON", () => {
  const wire = {
    num_layers: 2,
    shared_experts: { "1": ["shared_expert"] },
    parameters: { one_expert: 5 },
    batches: [{ sample_ids: ["b0_s1"] }],
  };
  const value = Example.parse(wire);
  assert.deepEqual(value, {
    numLayers: 2,
    sharedExperts: { "1": ["shared_expert"] },
    parameters: { oneExpert: 5 },
    batches: [{ sampleIds: ["b0_s1"] }],
  });
  assert.deepEqual(z.encode(Example, value), wire);
});

test("the JSON side is checked: camelCase or missing keys are refused", () => {
  assert.equal(Example.safeParse({ numLayers: 2 }).success, false);
  const problem = Example.safeParse({ num_layers: "2", shared_experts: {}, parameters: {}, batches: [] });
  assert.equal(problem.success, false);
  assert.deepEqual(problem.error!.issues[0]!.path, ["num_layers"]);
});

test("no key of the engine's model description reaches TypeScript in snake_case", () => {
  const keys = (schema: z.ZodType): string[] =>
    schema instanceof z.ZodObject
      ? Object.entries(schema.shape as Record<string, z.ZodType>).flatMap(([k, v]) => [k, ...keys(v)])
      : [];
  const names = keys(ModelInfo.out as z.ZodType);
  assert.ok(names.includes("numLayers") && names.includes("oneExpert"));
  assert.deepEqual(
    names.filter((k) => k.includes("_")),
    [],
  );
});
