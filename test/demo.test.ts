// The README's method, as commands, run exactly as printed (test-packaged/package.test.ts runs the demo
// from the installed npm package).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { assertRepaired, PACKAGE_ROOT, tempDir } from "./helpers.js";

test("the README's method, as commands, run as printed, reproduces the demo's effect", (t) => {
  const readme = readFileSync(join(PACKAGE_ROOT, "README.md"), "utf8");
  const section = readme.split("## The method, as commands")[1]!;
  const block = /```sh\n([\s\S]*?)```/.exec(section)![1]!;
  const commands = block.split("\n").filter((l) => l.startsWith("bin/steermoe "));
  assert.deepEqual(
    commands.map((c) => c.split(" ")[1]),
    ["analyze", "train", "eval", "report"],
  );
  // A folder of its own with the repository's bin/ and organism/ in it, so runs/ lands there.
  const cwd = tempDir(t);
  for (const name of ["bin", "organism"]) symlinkSync(join(PACKAGE_ROOT, name), join(cwd, name));
  const outputs = commands.map((command) => {
    const result = spawnSync("sh", ["-c", command], { cwd, encoding: "utf8", timeout: 600_000 });
    assert.equal(result.status, 0, `${command}\n${result.stderr}`);
    return result.stdout;
  });
  assertRepaired(outputs[2]!);
  assert.ok(existsSync(join(cwd, "runs", "x", "report.html")));

  // The README's sweep, on the run just made, kept small: 10 items per set, intensities 0 and 4.
  const sweepBlock = /A sweep on the method's run above[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)![1]!;
  const [sweep, sweepReport] = sweepBlock.split("\n").filter((l) => l.startsWith("bin/steermoe "));
  assert.match(sweep!, /^bin\/steermoe eval .*--steer-sweep /);
  for (const command of [`${sweep} --limit 10 --steer-sweep 0,4`, sweepReport!]) {
    const result = spawnSync("sh", ["-c", command], { cwd, encoding: "utf8", timeout: 600_000 });
    assert.equal(result.status, 0, `${command}\n${result.stderr}`);
  }
  const results = JSON.parse(readFileSync(join(cwd, "runs", "x", "sweep", "results.json"), "utf8")) as {
    name: string;
    steer?: { model: string; intensity: number };
    metrics: Record<string, { rate: number; low: number; high: number; k: number; n: number }>;
  }[];
  const samples = readFileSync(join(cwd, "runs", "x", "sweep", "samples.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { model: string; set: string; is_refusal: boolean });
  assert.deepEqual(
    results.map((r) => [r.name, r.steer?.intensity ?? 0]),
    [
      ["before", 0],
      ["before+steer×4", 4],
      ["after", 0],
      ["after+steer×4", 4],
    ],
  );
  for (const r of results) {
    // Every point's rates are its own judged samples, with a 95% interval around them.
    const jailbreaks = samples.filter((s) => s.model === r.name && s.set === "jailbreak");
    const a = r.metrics.attack_success!;
    assert.deepEqual([a.k, a.n], [jailbreaks.filter((s) => !s.is_refusal).length, 10]);
    assert.ok(a.low <= a.rate + 1e-12 && a.rate <= a.high + 1e-12); // wilson(n, n).high is 1 - 1e-16
  }
  // Measured, not asserted: whether the fine-tuned model's attack success rises or falls with
  // the intensity, and whether the steps exceed their intervals.
  const after = results.filter((r) => r.name.startsWith("after")).map((r) => r.metrics.attack_success!);
  t.diagnostic(`after, attack success at 0 and 4: ${after.map((a) => `${a.k}/${a.n}`).join(", ")}`);
  const html = readFileSync(join(cwd, "runs", "x", "sweep", "report.html"), "utf8");
  assert.ok(html.includes('"steer":{"model":"after","intensity":4}'));
});
