// The run lifecycle: prompts measured against the model's context and the memory budget before
// anything is generated or written, resume refused on a changed model, one command per run folder
// (lock), and a run folder that failed before its first batch started over by the next command.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { BIN, flipattackRecords, run, tempDir } from "../helpers.js";
import { withEngine } from "../../src/components/engine/client.js";
import { tinyModel } from "../../src/recipes/tiny-model.js";
import { badInputs } from "./harness.js";

const shared = tempDir({ after });
let modelA: string;
/** The weights of a model of the same architecture and size as A, from another seed. */
let weightsB: string;
/** Processes a case started (lock holders); stopped once the file is done. */
const holders: number[] = [];

before(async () => {
  // One engine builds both (starting one is most of the time of a build).
  await withEngine({}, async (engine) => {
    modelA = (
      await tinyModel(
        { arch: "olmoe", out: join(shared, "seed-0"), seed: 0, size: { layers: 2 } },
        { engine },
      )
    ).path;
    const b = join(shared, "seed-1");
    await tinyModel({ arch: "olmoe", out: b, seed: 1, size: { layers: 2 } }, { engine });
    weightsB = join(b, "model.safetensors");
  });
});
after(() => {
  for (const pid of holders) process.kill(pid, "SIGKILL");
});

const FAST = ["--batch-size", "4", "--max-new-tokens", "4", "--qc", "off", "--compute-batch", "8"];

/** A dataset of `n` FlipAttack records in `dir`, `change` applied to them first. */
function data(
  dir: string,
  n = 4,
  change: (records: ReturnType<typeof flipattackRecords>) => void = () => {},
) {
  const records = flipattackRecords(n);
  change(records);
  const file = join(dir, "data.json");
  writeFileSync(file, JSON.stringify(records));
  return file;
}

/** The analysis command on a copy of model A in `dir` (so a case may damage it). */
function analyzeArgs(dir: string, ...extra: string[]): string[] {
  const model = join(dir, "model");
  if (!existsSync(model)) cpSync(modelA, model, { recursive: true });
  return [
    "analyze",
    "--run",
    join(dir, "run"),
    "--data",
    join(dir, "data.json"),
    "--model",
    model,
    ...FAST,
    ...extra,
  ];
}

/** A finished analysis in `dir/run` with its last batch taken away: a run stopped before its end. */
function interruptedRun(dir: string): void {
  data(dir);
  const first = run(analyzeArgs(dir));
  assert.equal(first.status, 0, first.stderr);
  rmSync(join(dir, "run", "samples", "batch-00001.jsonl"));
}

/** A lock file in the run folder `dir` naming `pid` on `host`. */
function lock(dir: string, pid: number, host = hostname()): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, ".lock"), JSON.stringify({ pid, host, started: "2026-01-01T00:00:00.000Z" }));
}

/** A process that stays alive until the file is done: a live lock holder. */
function liveProcess(): number {
  const child = spawn("sleep", ["600"], { stdio: "ignore", detached: true });
  child.unref();
  holders.push(child.pid!);
  return child.pid!;
}

/** The pid of a process that has exited. */
function deadPid(): number {
  return Number(spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" }).stdout.trim());
}

/** Text of more tokens than the tiny models' context (4096). */
const LONG = Array.from({ length: 6000 }, (_, i) => `word${i % 50}`).join(" ");
const longGoal = (records: ReturnType<typeof flipattackRecords>) => {
  records[1]!.goal = LONG;
};
const user = (content: string) => ({ role: "user", content });
const reply = (content: string) => ({ role: "assistant", content });

/** A conversation file `dir/convs.jsonl` of {id, messages}. */
function conversations(dir: string, byId: Record<string, object[]>): string {
  const file = join(dir, "convs.jsonl");
  const lines = Object.entries(byId).map(([id, messages]) => JSON.stringify({ id, messages }));
  writeFileSync(file, lines.join("\n"));
  return file;
}

badInputs("run lifecycle", [
  {
    name: "length: a goal longer than the model's context",
    setup: (dir) => (data(dir, 4, longGoal), analyzeArgs(dir)),
    expect:
      /data\.json record id 1 field goal: the prompt is \d+ tokens, over the limit of 4092 \(the context of .* \(4096 tokens\) less --max-new-tokens 4\); .*--skip-long/,
    absent: ["run"],
  },
  {
    name: "length: a prompt over --max-prompt-tokens",
    setup: (dir) => (data(dir), analyzeArgs(dir, "--max-prompt-tokens", "12")),
    expect:
      /data\.json record id 0 field goal: the prompt is \d+ tokens, over the limit of 12 \(--max-prompt-tokens 12\)/,
    absent: ["run"],
  },
  {
    name: "length: --max-new-tokens beyond the model's context",
    setup: (dir) => (data(dir), [...analyzeArgs(dir), "--max-new-tokens", "5000"]),
    expect: /--max-new-tokens 5000 leaves no room for a prompt in the context of .* \(4096 tokens\)/,
    absent: ["run"],
  },
  {
    name: "length: --max-prompt-tokens 0",
    setup: (dir) => (data(dir), analyzeArgs(dir, "--max-prompt-tokens", "0")),
    expect: /--max-prompt-tokens.*expected a whole number >= 1/,
    absent: ["run"],
  },
  {
    name: "memory: one analysis batch over --max-memory",
    setup: (dir) => (data(dir), analyzeArgs(dir, "--max-memory", "64KiB")),
    expect:
      /4 sequences of up to \d+ tokens need about .* GiB, over the memory budget of 0\.000 GiB \(--max-memory\); lower --max-new-tokens or --batch-size/,
    absent: ["run"],
  },
  {
    name: "memory: --max-memory 0",
    setup: (dir) => (data(dir), analyzeArgs(dir, "--max-memory", "0")),
    expect: /--max-memory.*must be at least one byte/,
    absent: ["run"],
  },
  {
    name: "memory: --max-memory that is not a size",
    setup: (dir) => (data(dir), analyzeArgs(dir, "--max-memory", "lots")),
    expect: /--max-memory.*expected bytes, or a size like 512MB or 8GiB/,
    absent: ["run"],
  },
  {
    name: "length: generate with a conversation longer than the context",
    setup: (dir) => {
      const input = conversations(dir, { short: [user("hi")], long: [user(LONG)] });
      const out = join(dir, "out");
      return ["generate", "--model", modelA, "--input", input, "--out", out, "--max-new-tokens", "4"];
    },
    expect: /convs\.jsonl record id long field messages: the prompt is \d+ tokens, over the limit/,
    absent: ["out"],
  },
  {
    name: "length: eval with a benign prompt longer than the context",
    setup: (dir) => {
      const benign = join(dir, "benign.json");
      writeFileSync(
        benign,
        JSON.stringify([
          { id: "b0", prompt: "hi" },
          { id: "b1", prompt: LONG },
        ]),
      );
      return [
        "eval",
        "--model",
        modelA,
        "--benign",
        benign,
        "--max-new-tokens",
        "4",
        "--out",
        join(dir, "out"),
      ];
    },
    expect: /benign\.json record id b1 \(benign prompt\): the prompt is \d+ tokens, over the limit of 4092/,
    absent: ["out"],
  },
  {
    name: "length: train on a conversation longer than the context",
    setup: (dir) => {
      const data = conversations(dir, { a: [user("hi"), reply("hello")], b: [user("hi"), reply(LONG)] });
      return ["train", "--data", data, "--model", modelA, "--trainable", "all", "--out", join(dir, "out")];
    },
    expect:
      /convs\.jsonl record id b field messages: the sequence is \d+ tokens, over the limit of 4096 \(the context of .*\); shorten it/,
    absent: ["out"],
  },
  {
    name: "resume: the weights were replaced by another model's",
    setup: (dir) => {
      interruptedRun(dir);
      cpSync(weightsB, join(dir, "model", "model.safetensors"));
      return analyzeArgs(dir);
    },
    expect:
      /run was made with another model at .*model \(model\.safetensors changed\); rerun with the model it was made with to resume/,
    absent: ["run/samples/batch-00001.jsonl", "run/.lock"],
    after: (dir) =>
      assert.ok(existsSync(join(dir, "run", "samples", "batch-00000.jsonl")), "a finished batch was lost"),
  },
  {
    name: "lock: the run is in use by a live process",
    setup: (dir) => {
      data(dir);
      lock(join(dir, "run"), liveProcess());
      return analyzeArgs(dir);
    },
    expect:
      /run .*run is in use by pid \d+ \(started 2026-01-01T00:00:00\.000Z\); wait for it or remove .*run\/\.lock if that process is gone/,
    absent: ["run/config.json"],
    after: (dir) => assert.ok(existsSync(join(dir, "run", ".lock")), "another command's lock was removed"),
  },
  {
    name: "lock: the run is in use on another host",
    setup: (dir) => (data(dir), lock(join(dir, "run"), 1, "elsewhere.example"), analyzeArgs(dir)),
    expect: /is in use by pid 1 on elsewhere\.example/,
    absent: ["run/config.json"],
  },
  {
    name: "lock: train on an output folder in use",
    setup: (dir) => {
      const data = conversations(dir, { a: [user("hi"), reply("yo")] });
      lock(join(dir, "out"), liveProcess());
      return ["train", "--data", data, "--model", modelA, "--trainable", "all", "--out", join(dir, "out")];
    },
    expect: /run .*out is in use by pid \d+/,
    absent: ["out/config.json"],
  },
]);

/** The analysis as a child process, its stderr collected. */
function startAnalyze(args: string[]) {
  const child = spawn(BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<number | null>((resolve) => child.on("close", resolve));
  return { child, done, stderr: () => stderr };
}

test("lock: a second analyze while the first runs is refused; the first finishes", async (t) => {
  const dir = tempDir(t);
  data(dir);
  const first = startAnalyze(analyzeArgs(dir));
  const lockFile = join(dir, "run", ".lock");
  while (!existsSync(lockFile)) {
    assert.equal(
      first.child.exitCode,
      null,
      `the first analyze ended before taking the lock: ${first.stderr()}`,
    );
    await sleep(50);
  }
  // Stopped, not ended: it holds the lock while the second command tries.
  first.child.kill("SIGSTOP");
  const second = run(analyzeArgs(dir));
  first.child.kill("SIGCONT");
  assert.equal(second.status, 1);
  assert.match(second.stderr, new RegExp(`is in use by pid ${first.child.pid} `));
  assert.equal(await first.done, 0, first.stderr());
  assert.ok(existsSync(join(dir, "run", "experts.json")));
  assert.ok(!existsSync(lockFile), "the lock outlived its command");
});

test("lock: a lock left by a process that is gone is taken over", async (t) => {
  const dir = tempDir(t);
  data(dir);
  const pid = deadPid();
  lock(join(dir, "run"), pid);
  const result = run(analyzeArgs(dir));
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stderr, new RegExp(`was locked by pid ${pid}, which is gone; taking the run over`));
  assert.ok(existsSync(join(dir, "run", "experts.json")));
  assert.ok(!existsSync(join(dir, "run", ".lock")));
});

test("stub: a run that failed before its first batch is started over with the fixed settings", async (t) => {
  const dir = tempDir(t);
  data(dir);
  // What a start that failed in its first batch leaves: the settings and the plan, no batch.
  const runDir = join(dir, "run");
  mkdirSync(runDir);
  const stub = { kind: "analyze", settings: { data: { file: "broken.json" } }, model: { fingerprint: {} } };
  writeFileSync(join(runDir, "config.json"), JSON.stringify(stub));
  writeFileSync(
    join(runDir, "batches.json"),
    JSON.stringify({ batch_size: 4, safe_ratio: 0.5, batches: [] }),
  );
  const result = run(analyzeArgs(dir));
  assert.equal(result.status, 0, result.stderr);
  assert.match(
    result.stderr,
    /run was made with other settings \(.*data\.file "broken\.json" → .*\) but holds no finished samples yet; starting it over/,
  );
  const config = JSON.parse(readFileSync(join(runDir, "config.json"), "utf8")) as {
    settings: { data: { file: string } };
  };
  assert.equal(config.settings.data.file, join(dir, "data.json"));
  assert.ok(existsSync(join(runDir, "experts.json")));
});

test("--skip-long: over-long pairs are left out, listed in batches.json and in the summary", async (t) => {
  const dir = tempDir(t);
  data(dir, 5, longGoal);
  const result = run(analyzeArgs(dir, "--skip-long"));
  assert.equal(result.status, 0, result.stderr);
  assert.match(
    result.stdout,
    /^done: 4 pairs .*\n1 pairs over the length limit left out \(--skip-long; listed in batches\.json\)/m,
  );
  const batches = JSON.parse(readFileSync(join(dir, "run", "batches.json"), "utf8")) as {
    skipped_long: string[];
    batches: { sample_ids: string[] }[];
  };
  assert.deepEqual(batches.skipped_long, ["1"]);
  assert.ok(
    !batches.batches.flatMap((b) => b.sample_ids).some((id) => id.startsWith("1:")),
    "a skipped pair was analysed",
  );
});

test("memory: the compute batch shrinks to fit --max-memory, and the progress line says so", async (t) => {
  const dir = tempDir(t);
  const input = conversations(
    dir,
    Object.fromEntries(Array.from({ length: 8 }, (_, i) => [i, [user(`story ${i}`)]])),
  );
  const out = join(dir, "out");
  const args = ["generate", "--model", modelA, "--input", input, "--out", out, "--max-new-tokens", "4"];
  const result = run([...args, "--compute-batch", "8", "--max-memory", "200KB"]);
  assert.equal(result.status, 0, result.stderr);
  const shrunk = /compute batch (\d+) \(of 8\) to fit/.exec(result.stderr);
  assert.ok(shrunk, `no shrink in the progress line: ${result.stderr}`);
  assert.ok(Number(shrunk[1]) >= 1 && Number(shrunk[1]) < 8);
  const shards = readdirSync(join(out, "routing"));
  assert.equal(
    shards.length,
    Math.ceil(8 / Number(shrunk[1])),
    "the engine was not called with the shrunk batch",
  );
  assert.equal(readFileSync(join(out, "samples.jsonl"), "utf8").trim().split("\n").length, 8);
});
