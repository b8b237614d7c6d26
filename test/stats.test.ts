import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { PACKAGE_ROOT } from "./helpers.js";
import { tQuantile } from "../src/components/method/stats.js";

// Made by test/fixtures/t_quantile.py with mpmath at 40 digits.
const Reference = z.object({
  dof: z.tuple([z.literal(1), z.int()]),
  quantiles: z.record(z.string(), z.array(z.number())),
});
const REFERENCE = Reference.parse(
  JSON.parse(readFileSync(join(PACKAGE_ROOT, "test", "fixtures", "t_quantile.json"), "utf8")),
);

test("t quantiles match mpmath to 1e-10 for every dof from 1 to 1000", () => {
  const [, maxDof] = REFERENCE.dof;
  assert.equal(maxDof, 1000);
  let worst = 0;
  for (const [pText, expected] of Object.entries(REFERENCE.quantiles)) {
    const p = Number(pText);
    assert.equal(expected.length, maxDof);
    expected.forEach((want, i) => {
      const dof = i + 1;
      const err = Math.abs(tQuantile(p, dof) - want);
      worst = Math.max(worst, err);
      assert.ok(err <= 1e-10, `p=${p} dof=${dof}: got ${tQuantile(p, dof)}, mpmath ${want}`);
      assert.equal(tQuantile(1 - p, dof), -tQuantile(p, dof), `p=${1 - p} dof=${dof} is the mirror`);
    });
  }
  assert.ok(worst > 0, "the comparison compared something");
});

test("t quantile edges: the median, the normal limit, and p outside (0, 1)", () => {
  assert.equal(tQuantile(0.5, 3), 0);
  assert.ok(Math.abs(tQuantile(0.975, 1e7) - 1.959963984540054) < 1e-6);
  for (const [p, dof] of [
    [0, 3],
    [1, 3],
    [0.5, 0],
    [Number.NaN, 3],
  ] as const) {
    assert.throws(() => tQuantile(p, dof), RangeError);
  }
});
