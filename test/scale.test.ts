// Beyond one device: several engines (--workers) and one model spread by --device-map. The run
// folder must not depend on either: same bytes, every sample once, even after a worker dies.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { cpuWorkers, ENGINE_BYTES, withPool } from "../src/components/engine/pool.js";
import { BIN, buildTiny, flipattackRecords, run, tempDir } from "./helpers.js";

const dir = tempDir({ after });
let model: string;
let data: string;
before(async () => {
  model = await buildTiny(dir);
  data = join(dir, "data.json");
  writeFileSync(data, JSON.stringify(flipattackRecords(16)));
});

// 8 analysis batches, one per compute batch: 8 pieces of work to hand out.
const analyzeArgs = (runDir: string) => [
  "analyze",
  ...["--data", data, "--model", model, "--run", runDir],
  ...["--batch-size", "4", "--compute-batch", "4", "--max-new-tokens", "8", "--qc", "off"],
];

/** Every file under `root`, relative path → bytes. */
function files(root: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else out.set(relative(root, path), readFileSync(path));
    }
  };
  walk(root);
  return out;
}

function assertSameFolder(actual: string, expected: string): void {
  const [a, e] = [files(actual), files(expected)];
  assert.deepEqual([...a.keys()].sort(), [...e.keys()].sort());
  for (const [path, bytes] of e) assert.ok(a.get(path)!.equals(bytes), `${path} differs`);
}

let single: string;

test("analyze with 2 workers writes the same bytes as with 1, and says how it split the CPU", () => {
  single = join(dir, "one");
  const one = run(analyzeArgs(single));
  assert.equal(one.status, 0, one.stderr);
  assert.doesNotMatch(one.stderr, /engines:/);
  const twoDir = join(dir, "two");
  const two = run([...analyzeArgs(twoDir), "--workers", "2"]);
  assert.equal(two.status, 0, two.stderr);
  assert.match(
    two.stderr,
    /engines: 2 workers × \d+ threads?: worker 1 \(cpu, pid \d+\), worker 2 \(cpu, pid \d+\)/,
  );
  assert.ok(existsSync(join(twoDir, "routing", "batch-00007.safetensors")));
  assert.ok(existsSync(join(twoDir, "risk_diff.parquet")));
  assertSameFolder(twoDir, single);
});

test("a worker killed mid-run is named; the rerun, with another worker count, completes every sample once", async () => {
  const runDir = join(dir, "killed");
  const child = spawn(BIN, [...analyzeArgs(runDir), "--workers", "2"], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  // Once a batch is committed the work is under way: freeze both engines, so the run cannot end
  // while we look, then kill worker 2 and let worker 1 finish what it holds.
  const samples = join(runDir, "samples");
  while (!(existsSync(samples) && readdirSync(samples).some((f) => f.endsWith(".jsonl")))) await sleep(10);
  const pids = [...stderr.matchAll(/worker (\d) \(cpu, pid (\d+)\)/g)].map((m) => Number(m[2]));
  assert.equal(pids.length, 2, stderr);
  for (const pid of pids) process.kill(pid, "SIGSTOP");
  const committed = readdirSync(samples).filter((f) => f.endsWith(".jsonl")).length;
  assert.ok(committed < 8, "the run ended before the kill");
  process.kill(pids[1]!, "SIGKILL");
  process.kill(pids[0]!, "SIGCONT");
  assert.equal(await exited, 1);
  const lines = stderr.trim().split("\n");
  // The engines' last output is kept in a log file the line names.
  assert.match(
    lines.at(-1)!,
    new RegExp(
      `^steermoe: worker 2 \\(cpu, pid ${pids[1]}\\) died: the engine was killed \\(SIGKILL\\); rerun the same command to resume \\(log: \\S+\\)$`,
    ),
  );
  assert.ok(!existsSync(join(runDir, "samples.jsonl")), "a failed run is not finished");
  // Nothing of the dead worker's batch is on disk as done: what is there is whole.
  const done = readdirSync(samples).filter((f) => f.endsWith(".jsonl")).length;
  assert.ok(done >= committed && done < 8);

  const rerun = run(analyzeArgs(runDir));
  assert.equal(rerun.status, 0, rerun.stderr);
  const ids = readFileSync(join(runDir, "samples.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => (JSON.parse(l) as { sample_id: string }).sample_id);
  assert.equal(ids.length, 32);
  assert.equal(new Set(ids).size, 32);
  assertSameFolder(runDir, single);
});

// That --device-map auto records the same routing bytes is engine/tests/test_models.py's; here,
// that the flag reaches the engine's loader.
test("--device-map reaches the engine, which leaves placement to it alone", () => {
  const input = join(dir, "conversations.jsonl");
  writeFileSync(input, JSON.stringify({ messages: [{ role: "user", content: "Say hello" }] }));
  const args = ["generate", "--model", model, "--input", input, "--out", join(dir, "mapped")];
  const result = run([...args, "--device-map", "auto", "--device", "cpu"]);
  assert.equal(result.status, 1);
  assert.equal(
    result.stderr.trim(),
    "steermoe: --device-map places the model itself: leave --device at auto",
  );
});

test("when every worker dies, the batches running and those waiting for a worker all fail, naming one", async () => {
  const lines: string[] = [];
  const errors = await withPool(
    {},
    { workers: 2 },
    async (generator) => {
      await generator.load({ source: model });
      for (const [, pid] of lines.join("\n").matchAll(/pid (\d+)/g)) process.kill(Number(pid), "SIGKILL");
      const request = {
        conversations: [[{ role: "user" as const, content: "Hi" }]],
        seeds: [0],
        sampling: { maxNewTokens: 2, temperature: 1, topP: 1 },
        shards: [],
      };
      // One more than there are workers: the third waits for a worker that never comes free.
      const calls = [0, 1, 2].map(() => generator.generate(request));
      return Promise.all(
        calls.map((call) =>
          call.then(
            () => "done",
            (err: Error) => err.message,
          ),
        ),
      );
    },
    (line) => lines.push(line),
  );
  assert.equal(errors.length, 3);
  for (const message of errors) {
    assert.match(message, /^worker [12] \(cpu, pid \d+\) died: the engine was killed \(SIGKILL\); rerun/);
  }
});

test("--workers is held to the cores and the available memory, with a line saying why", () => {
  const GiB = 2 ** 30;
  assert.deepEqual(cpuWorkers(2, 2, 20 * GiB), { count: 2 });
  assert.deepEqual(cpuWorkers(99, 2, 20 * GiB), {
    count: 2,
    note: "--workers 99: this machine has 2 cores; starting 2",
  });
  assert.deepEqual(cpuWorkers(8, 16, 3 * ENGINE_BYTES + 1), {
    count: 3,
    note: `--workers 8: ${((3 * ENGINE_BYTES + 1) / GiB).toFixed(1)} GiB of memory is available, 0.75 GiB per engine before its model; starting 3`,
  });
  assert.deepEqual(cpuWorkers(4, 8, 0), {
    count: 1,
    note: "--workers 4: 0.0 GiB of memory is available, 0.75 GiB per engine before its model; starting 1",
  });
  assert.deepEqual(cpuWorkers(4, 8, null), { count: 4 });
});
