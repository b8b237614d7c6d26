// steermoe train stopped part-way (Ctrl-C, kill -9 of the engine or of one FSDP2 rank) and rerun:
// the rerun ends at the weights of an uninterrupted run.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { analysedTiny, BIN, differingTensors, jsonl, run, tempDir } from "./helpers.js";

// Removed once every test of this file has run.
const dir = tempDir({ after });
let model: string;
let trainArgs: (out: string, ...extra: string[]) => string[];

before(async () => ({ model, trainArgs } = await analysedTiny(dir)));

test("a run stopped by Ctrl-C or killed resumes to the same weights as an uninterrupted one", async (t) => {
  const tmp = tempDir(t);
  const straight = join(tmp, "straight");
  assert.equal(run(trainArgs(straight, "--checkpoint-every", "2")).status, 0);

  for (const how of ["SIGINT", "kill -9"] as const) {
    const out = join(tmp, how.replace(/\W/g, ""));
    const args = trainArgs(out, "--checkpoint-every", "2");
    const child = spawn(BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    const logPath = join(out, "train_log.jsonl");
    while (!(existsSync(logPath) && jsonl(logPath).length >= 5)) await new Promise((r) => setTimeout(r, 20));
    if (how === "SIGINT") child.kill("SIGINT");
    else {
      const engine = spawnSync("pgrep", ["-P", String(child.pid), "-f", "steermoe_engine"], {
        encoding: "utf8",
      });
      process.kill(Number(engine.stdout.trim()), "SIGKILL");
    }
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    if (how === "SIGINT") {
      assert.equal(code, 130);
      assert.match(stdout, /stopped at step \d+\/12 \(checkpoint saved\)/);
    } else assert.equal(code, 1);
    // One file per checkpoint, the engine's, with no sidecar; the newest two are kept. A write the
    // kill cut short leaves its temporary file (ours, NAME.tmp-PID, or safetensors' own .tmpXXXXXX).
    const written = (f: string) => !f.includes(".tmp-") && !f.startsWith(".tmp");
    const files = readdirSync(join(out, "checkpoints")).filter(written);
    assert.ok(files.length === 1 || files.length === 2, files.join(", "));
    for (const f of files) assert.match(f, /^step-\d{6}\.safetensors$/);
    const resumed = run(args);
    assert.equal(resumed.status, 0, resumed.stderr);
    // The next checkpoint's clean-up removed any such leftover.
    for (const f of readdirSync(join(out, "checkpoints"))) assert.match(f, /^step-\d{6}\.safetensors$/);
    assert.match(resumed.stdout, /resumed and finished: 12 steps/);
    assert.deepEqual(differingTensors(join(straight, "final_model"), join(out, "final_model")), [], how);
    assert.deepEqual(
      jsonl(join(out, "train_log.jsonl")).map((r) => [r.step, r.batch_idx, r.loss]),
      jsonl(join(straight, "train_log.jsonl")).map((r) => [r.step, r.batch_idx, r.loss]),
    );
  }
});

test("--nproc 2: a rank killed with -9 stops the run naming it; the rerun ends at the uninterrupted weights", async (t) => {
  const tmp = tempDir(t);
  const env = { ...process.env, OMP_NUM_THREADS: "1" };
  const args = (out: string) => trainArgs(out, "--nproc", "2", "--checkpoint-every", "2");
  const straight = join(tmp, "straight");
  const done = run(args(straight), { env });
  assert.equal(done.status, 0, done.stderr);
  assert.match(done.stdout, /done: 12 steps/);

  const out = join(tmp, "killed");
  const child = spawn(BIN, args(out), { env, stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const logPath = join(out, "train_log.jsonl");
  while (!(existsSync(logPath) && jsonl(logPath).length >= 3)) await new Promise((r) => setTimeout(r, 10));
  // The CLI is held still while the rank dies, so the run stops mid-way however fast steps are.
  child.kill("SIGSTOP");
  const children = (pid: number, pattern: string) =>
    Number(spawnSync("pgrep", ["-P", String(pid), "-f", pattern], { encoding: "utf8" }).stdout.trim());
  const rank1 = children(children(child.pid!, "steermoe_engine"), "spawn_main");
  assert.ok(rank1 > 0 && jsonl(logPath).length < 12);
  process.kill(rank1, "SIGKILL");
  child.kill("SIGCONT");
  assert.equal(await exited, 1);
  assert.match(stderr, new RegExp(`engine rank 1 \\(pid ${rank1}\\) was killed \\(signal 9\\)`));

  const resumed = run(args(out), { env });
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stdout, /resumed and finished: 12 steps/);
  assert.deepEqual(differingTensors(join(straight, "final_model"), join(out, "final_model")), []);
  // The delta, gathered from the ranks' shards, rebuilds the model.
  const rebuilt = join(tmp, "rebuilt");
  const delta = join(out, "expert_delta.safetensors");
  assert.equal(run(["apply-delta", "--base", model, "--delta", delta, "--out", rebuilt]).status, 0);
  assert.deepEqual(differingTensors(join(straight, "final_model"), rebuilt), []);
  assert.deepEqual(
    jsonl(join(out, "train_log.jsonl")).map((r) => [r.step, r.batch_idx, r.loss]),
    jsonl(join(straight, "train_log.jsonl")).map((r) => [r.step, r.batch_idx, r.loss]),
  );
});
