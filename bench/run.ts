// `npm run bench`: how fast steermoe analyses, how it scales, how fast its risk difference is and
// how much memory expert-only training saves, each measured side by side with what it replaces in
// one run. Writes docs/benchmarks.md (tables, targets met/missed) and docs/benchmarks.json (raw).
//
// STEERMOE_BENCH_QUICK=1 runs a tiny version of every section, for iterating on this file;
// STEERMOE_BENCH_SECTIONS=workers,scaling runs only those. Neither overwrites the published numbers.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { analyze, type AnalyzeSettings } from "../src/recipes/analyze.js";
import { threadsPerWorker } from "../src/components/engine/pool.js";
import { readRoutingShard, type RoutingTrace } from "../src/components/io/routing.js";
import { Engine, PACKAGE_ROOT, type TinySize } from "../src/components/engine/client.js";
import type { GeneratedSample } from "../src/components/engine/protocol.js";
import type { Messages, ModelInfo } from "../src/components/domain.js";
import {
  computeRiskDiff,
  routingShape,
  type RoutedSample,
  type RoutingShape,
} from "../src/components/method/riskdiff.js";
import { mulberry32 } from "../src/components/method/stats.js";
import { cpuSeconds, describeMachine, loadAverage, processMemory } from "./machine.js";
import { PythonWorker, runPython } from "./python.js";
import { keptGpuSection, mark, table, verdict, writeFormatted, writeReport, type Verdict } from "./report.js";
import { fmt, linearFit, summarize, timed } from "./stats.js";

const QUICK = process.env.STEERMOE_BENCH_QUICK === "1";
const ONLY = process.env.STEERMOE_BENCH_SECTIONS?.split(",");
const PARTIAL = QUICK || ONLY !== undefined;

// Every size the run uses. The full run must finish in under 15 minutes on a 2-core CPU, which
// is what bounds the repeat counts and the token counts of the scaling series.
const CPU_MODEL: TinySize = {
  hidden: 512,
  layers: 4,
  heads: 8,
  experts: 64,
  topK: 8,
  expertFfn: 256,
  vocab: 50304,
};
// OLMoE-1B-7B's shape (random weights), used where CUDA exists.
const CUDA_MODEL: TinySize = {
  hidden: 2048,
  layers: 16,
  heads: 16,
  experts: 64,
  topK: 8,
  expertFfn: 1024,
  vocab: 50304,
};
const P = QUICK
  ? {
      pairs: 2,
      promptTokens: 96,
      newTokens: 8,
      rounds: 2,
      scalePairs: [8, 16],
      scaleTokens: 2,
      batchSizes: [1, 4],
      batchPrompts: 8,
      rdBatches: 4,
      rdLoopBatches: 1,
      rdRuns: 3,
      trainSteps: 1,
      responseTokens: 16,
      workersPairs: 4,
      workersTokens: 4,
    }
  : {
      // Four analysis batches of 8 safe + 8 unsafe: one compute batch of 64, the default.
      pairs: 32,
      promptTokens: 350,
      newTokens: 128,
      rounds: 5,
      scalePairs: [50, 100, 200, 400],
      scaleTokens: 4,
      batchSizes: [1, 8, 32, 64],
      batchPrompts: 64,
      rdBatches: 46,
      rdLoopBatches: 2,
      rdRuns: 7,
      trainSteps: 5,
      responseTokens: 64,
      workersPairs: 16,
      workersTokens: 16,
    };
// One safe and one unsafe prompt for the baseline (one prompt at a time: its rate is per prompt).
const BASELINE = [0, P.pairs];
const RD = { samples: 16, tokens: 128, layers: 16, experts: 64, topK: 8 };
const TRAIN_EXPERTS = 50;

interface PromptRow {
  label: "safe" | "unsafe";
  messages: Messages;
  prompt_tokens: number;
  answer: string;
}

interface BaselineRun {
  seconds: number;
  tokens: number;
  logit_bytes: number;
  generate_seconds: number;
  write_seconds: number;
  count_seconds: number;
  outputs: { generated_ids: number[]; topk: number[] }[];
}

const log = (msg: string) =>
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

async function main(): Promise<void> {
  const started = Date.now();
  const work = mkdtempSync(join(tmpdir(), "steermoe-bench-"));
  const results: Record<string, unknown> = { quick: QUICK, date: new Date().toISOString() };
  // Other work on a shared machine slows every timing; the load average says how busy it was.
  const loadStart = loadAverage();
  const engine = await Engine.start();
  try {
    const cuda = engine.info.cuda;
    const size = cuda ? CUDA_MODEL : CPU_MODEL;
    const model = join(work, "model");
    log(`building the bench model (${cuda ? "OLMoE-1B-7B shape" : "CPU-scaled OLMoE"}, random weights)`);
    const built = await engine.buildTiny("olmoe", model, 0, { size });
    const info = await engine.load({ source: model, dtype: cuda ? "bf16" : "auto" });
    results.model = { size, parameters: built.parameters, info };
    const promptsFile = join(work, "prompts.json");
    await runPython([
      "prompts",
      "--model",
      model,
      "--data",
      join(PACKAGE_ROOT, "organism", "data", "train.json"),
      "--pairs",
      String(P.pairs),
      "--tokens",
      String(P.promptTokens),
      "--response-tokens",
      String(P.responseTokens),
      "--out",
      promptsFile,
    ]);
    const prompts = JSON.parse(readFileSync(promptsFile, "utf8")) as PromptRow[];

    const sections: [string, () => Promise<unknown>][] = [
      ["analysis", () => analysisSection(engine, info, model, promptsFile, prompts, work)],
      ["riskdiff", () => riskDiffSection(work)],
      ["scaling", () => scalingSection(engine, info, model, work)],
      ["training", () => trainingSection(model, cuda, prompts)],
      ["workers", () => workersSection(model, work)],
    ];
    for (const [name, run] of sections.filter(([name]) => !ONLY || ONLY.includes(name))) {
      const t = Date.now();
      log(`${name}…`);
      try {
        results[name] = await run();
        (results[name] as Record<string, unknown>).load_average_after = loadAverage();
      } catch (err) {
        // One failing section (say, full fine-tuning out of memory on a GPU) must not lose the rest.
        log(`${name} failed: ${(err as Error).message}`);
        results[name] = { error: (err as Error).message };
      }
      log(`${name} done in ${((Date.now() - t) / 1000).toFixed(0)} s`);
    }
    results.engine = engine.info;
    results.load_average_start = loadStart;
  } finally {
    await engine.close();
    rmSync(work, { recursive: true, force: true });
  }
  results.machine = describeMachine();
  results.wall_seconds = (Date.now() - started) / 1000;
  results.load_average_end = loadAverage();
  const docs = join(PACKAGE_ROOT, "docs");
  mkdirSync(docs, { recursive: true });
  // The quick run is for iterating on the bench itself; it never overwrites the published numbers.
  const stem = PARTIAL ? join(work + "-partial") : join(docs, "benchmarks");
  if (PARTIAL) mkdirSync(stem, { recursive: true });
  const jsonPath = PARTIAL ? join(stem, "benchmarks.json") : `${stem}.json`;
  const mdPath = PARTIAL ? join(stem, "benchmarks.md") : `${stem}.md`;
  await writeFormatted(jsonPath, JSON.stringify(results, null, 2) + "\n");
  await writeReport(mdPath, render(results, keptGpuSection(mdPath)));
  log(`wrote ${mdPath} and ${jsonPath} (${results.wall_seconds} s)`);
}

// --------------------------------------------------------------------------------------------
// analysis: steermoe recorded vs not recorded vs the reference-style baseline

async function analysisSection(
  engine: Engine,
  info: ModelInfo,
  model: string,
  promptsFile: string,
  prompts: PromptRow[],
  work: string,
) {
  const conversations = prompts.map((p) => p.messages);
  const seeds = prompts.map((_, i) => 42 + i);
  const sampling = { maxNewTokens: P.newTokens, temperature: 0, topP: 1 };
  const shape = routingShape(info);
  await engine.generate(conversations.slice(0, 2), seeds.slice(0, 2), { ...sampling, maxNewTokens: 2 });
  const baseline = await PythonWorker.start(["baseline", "--model", model, "--prompts", promptsFile]);
  await baseline.request({ indices: [0], max_new_tokens: 2, dir: work });

  const recorded: number[] = [];
  const plain: number[] = [];
  const reference: number[] = [];
  const cpu = { recorded: [] as number[], plain: [] as number[], baseline: [] as number[] };
  const countMs: number[] = [];
  let lengths: number[] = [];
  let baseRuns: BaselineRun[] = [];
  let sample: GeneratedSample[] = [];
  let routing: RoutingTrace[] = [];
  const shards = [
    { path: join(work, "bench.safetensors"), sampleIds: conversations.map((_, i) => String(i)) },
  ];
  // CPU seconds a process spends on `work`: unlike wall time, barely moved by other work.
  const cpuOf = async <T>(pid: number | undefined, work: () => Promise<T>) => {
    const before = cpuSeconds(pid);
    const value = await work();
    return { value, cpu: cpuSeconds(pid) - before };
  };
  try {
    for (let round = 0; round < P.rounds; round++) {
      const record = async () => {
        const { value: t, cpu: c } = await cpuOf(engine.pid, () =>
          timed(() => engine.generate(conversations, seeds, sampling, shards)),
        );
        // steermoe's analysis = generation with routing recorded + reading it back and counting.
        const count = await timed(() => {
          routing = readRoutingShard(shards[0]!.path).traces;
          const routed: RoutedSample[] = routing.map((r, i) => ({
            label: prompts[i]!.label,
            expertIds: r.generation,
          }));
          // Analysis batches of 8 safe + 8 unsafe: the safe prompts come first, then the unsafe.
          const batches = Array.from({ length: P.pairs / 8 || 1 }, (_, b) => {
            const half = (from: number) => routed.slice(from + b * 8, from + b * 8 + 8);
            return [...half(0), ...half(P.pairs)];
          });
          return computeRiskDiff(batches, shape);
        });
        countMs.push(count.seconds * 1000);
        recorded.push(t.seconds + count.seconds);
        cpu.recorded.push(c);
        lengths = t.value.map((s) => s.generatedIds.data.length);
        sample = t.value;
      };
      const noRecord = async () => {
        const { value: t, cpu: c } = await cpuOf(engine.pid, () =>
          timed(() => engine.generate(conversations, seeds, sampling)),
        );
        plain.push(t.seconds);
        cpu.plain.push(c);
      };
      // Recorded and plain runs are always adjacent (in alternating order), so each round's pair
      // saw the same machine load; the overhead is the median of the per-round ratios.
      if (round % 2 === 0) {
        await record();
        await noRecord();
      } else {
        await noRecord();
        await record();
      }
      const { value: run, cpu: c } = await cpuOf(baseline.pid, () =>
        baseline.request<BaselineRun>({
          indices: BASELINE,
          max_new_tokens: P.newTokens,
          topk: round === 0,
          dir: work,
        }),
      );
      reference.push(run.seconds);
      cpu.baseline.push(c);
      baseRuns.push(run);
      log(
        `  round ${round + 1}: recorded ${recorded.at(-1)!.toFixed(1)} s, plain ${plain.at(-1)!.toFixed(1)} s, ` +
          `baseline ${reference.at(-1)!.toFixed(1)} s (load ${loadAverage()})`,
      );
    }
  } finally {
    await baseline.close();
  }
  const tokens = lengths.reduce((s, n) => s + n, 0);
  const baseTokens = baseRuns[0]!.tokens;
  const perSecond = (runs: number[], n: number) => summarize(runs.map((s) => n / s));
  const rec = perSecond(recorded, tokens);
  const noRec = perSecond(plain, tokens);
  const ref = perSecond(reference, baseTokens);
  const check = compareWithBaseline(sample, routing, baseRuns[0]!, BASELINE, info);
  baseRuns = baseRuns.map((r) => ({ ...r, outputs: [] }));
  return {
    prompts: prompts.length,
    prompt_tokens: prompts.map((p) => p.prompt_tokens),
    generated_lengths: lengths,
    all_full_length: lengths.every((n) => n === P.newTokens),
    max_new_tokens: P.newTokens,
    seconds: { recorded: summarize(recorded), plain: summarize(plain), baseline: summarize(reference) },
    tokens_per_second: { recorded: rec, plain: noRec, baseline: ref },
    overhead_percent: summarize(recorded.map((r, i) => (r / plain[i]! - 1) * 100)).median,
    overhead_percent_of_medians: (noRec.median / rec.median - 1) * 100,
    overhead_percent_cpu: (summarize(cpu.recorded).median / summarize(cpu.plain).median - 1) * 100,
    cpu_seconds: {
      recorded: summarize(cpu.recorded),
      plain: summarize(cpu.plain),
      baseline: summarize(cpu.baseline),
    },
    speedup_vs_baseline_cpu:
      summarize(cpu.baseline).median / baseTokens / (summarize(cpu.recorded).median / tokens),
    speedup_vs_baseline: rec.median / ref.median,
    count_ms: summarize(countMs),
    baseline_prompts: BASELINE,
    baseline_kernels: (baseline.ready as { kernels: unknown }).kernels,
    experts_kernels: info.expertsKernels,
    baseline_runs: baseRuns,
    baseline_check: check,
  };
}

/** Do the baseline's outputs and top-k experts equal steermoe's? Compared as sets per token and
 * layer, over the generated tokens both produced identically. */
function compareWithBaseline(
  ours: GeneratedSample[],
  routing: RoutingTrace[],
  base: BaselineRun,
  indices: number[],
  info: ModelInfo,
) {
  const L = info.moeLayers.length;
  const K = info.topK;
  let sameText = 0;
  let tokens = 0;
  let groups = 0;
  let equal = 0;
  indices.forEach((index, i) => {
    const mine = ours[index]!;
    const theirs = base.outputs[i]!;
    const ids = Array.from(mine.generatedIds.data as Int32Array);
    const same =
      ids.length === theirs.generated_ids.length && ids.every((t, j) => t === theirs.generated_ids[j]);
    if (same) sameText++;
    let prefix = 0;
    while (prefix < ids.length && ids[prefix] === theirs.generated_ids[prefix]) prefix++;
    const recorded = routing[index]!.generation;
    // Routing of a token depends on the tokens before it: compare up to the first divergence.
    for (let t = 0; t < prefix; t++) {
      tokens++;
      for (let l = 0; l < L; l++) {
        const at = (t * L + l) * K;
        const a = Array.from(recorded.subarray(at, at + K)).sort((x, y) => x - y);
        const b = theirs.topk.slice(at, at + K);
        groups++;
        if (a.every((e, j) => e === b[j])) equal++;
      }
    }
  });
  return {
    prompts: indices.length,
    identical_outputs: sameText,
    tokens_compared: tokens,
    topk_groups: groups,
    topk_equal: equal,
  };
}

// --------------------------------------------------------------------------------------------
// risk difference: computeRiskDiff vs an original-style per-token Python loop on the same ids

async function riskDiffSection(work: string) {
  const { samples, tokens, layers, experts, topK } = RD;
  const B = P.rdBatches;
  const perSample = tokens * layers * topK;
  const all = new Uint8Array(B * samples * perSample);
  const rand = mulberry32(7);
  const pool = Uint8Array.from({ length: experts }, (_, i) => i);
  // Distinct experts within each token's top-k, as a router returns them.
  for (let g = 0; g < all.length; g += topK) {
    for (let j = 0; j < topK; j++) {
      const r = j + Math.floor(rand() * (experts - j));
      const tmp = pool[j]!;
      pool[j] = pool[r]!;
      pool[r] = tmp;
      all[g + j] = pool[j]!;
    }
  }
  const labels = Uint8Array.from({ length: B * samples }, (_, i) => (i % samples < samples / 2 ? 0 : 1));
  const batches: RoutedSample[][] = [];
  for (let b = 0; b < B; b++) {
    const batch: RoutedSample[] = [];
    for (let s = 0; s < samples; s++) {
      const at = (b * samples + s) * perSample;
      batch.push({
        label: labels[b * samples + s] ? "unsafe" : "safe",
        expertIds: all.subarray(at, at + perSample),
      });
    }
    batches.push(batch);
  }
  const shape: RoutingShape = {
    numLayers: layers,
    moeLayers: Array.from({ length: layers }, (_, i) => i),
    numExperts: experts,
    topK,
  };
  const runs: number[] = [];
  let result = computeRiskDiff(batches, shape);
  for (let r = 0; r < P.rdRuns; r++) {
    const t = await timed(() => computeRiskDiff(batches, shape));
    runs.push(t.seconds * 1000);
    result = t.value;
  }
  const idsFile = join(work, "rd-ids.u8");
  const labelsFile = join(work, "rd-labels.u8");
  writeFileSync(idsFile, all);
  writeFileSync(labelsFile, labels);
  const loop = await runPython<{ batches: number; seconds: number; risk_diff: number[][][] }>([
    "pertoken",
    "--ids",
    idsFile,
    "--labels",
    labelsFile,
    "--shape",
    ...[B, samples, tokens, layers, topK].map(String),
    "--experts",
    String(experts),
    "--batches",
    String(P.rdLoopBatches),
  ]);
  let maxAbsDiff = 0;
  loop.risk_diff.forEach((batch, b) =>
    batch.forEach((row, l) =>
      row.forEach((v, e) => {
        maxAbsDiff = Math.max(maxAbsDiff, Math.abs(v - result.riskDiff[(b * layers + l) * experts + e]!));
      }),
    ),
  );
  const loopMs = (loop.seconds / loop.batches) * B * 1000;
  const ms = summarize(runs);
  return {
    shape: { batches: B, ...RD },
    compute_riskdiff_ms: ms,
    python_loop_batches_timed: loop.batches,
    python_loop_seconds_measured: loop.seconds,
    python_loop_ms_extrapolated: loopMs,
    speedup: loopMs / ms.median,
    max_abs_difference: maxAbsDiff,
  };
}

// --------------------------------------------------------------------------------------------
// scaling: the analyze recipe end to end over 50…400 pairs; compute batch sizes on fixed work

/** `n` organism pairs with short prompts (the plain request and the bare FlipAttack task line,
 * ~20-40 tokens): the full-length workload over 750 pairs would take hours on two cores. */
function organismPairs(n: number): { id: number; goal: string; flip_attack: string }[] {
  const records = JSON.parse(readFileSync(join(PACKAGE_ROOT, "organism", "data", "train.json"), "utf8")) as {
    goal: string;
    flip_attack: string;
  }[];
  return Array.from({ length: n }, (_, i) => {
    const r = records[i % records.length]!;
    return { id: i, goal: r.goal, flip_attack: r.flip_attack };
  });
}

/** analyze's settings for a file of organismPairs, greedy, `tokens` generated, no QC. */
function pairsSettings(model: string, file: string, tokens: number): AnalyzeSettings {
  return {
    model: { source: model },
    data: {
      file,
      mapping: {
        idField: "id",
        safe: { field: "goal", system: "You are a helpful assistant." },
        unsafe: { field: "flip_attack" },
        sourceFields: [],
      },
    },
    sampling: { maxNewTokens: tokens, temperature: 0 },
    qc: false,
  };
}

async function scalingSection(engine: Engine, info: ModelInfo, model: string, work: string) {
  const data = organismPairs(Math.max(...P.scalePairs));
  const pairs: { pairs: number; seconds: number; tokens_per_second: number }[] = [];
  for (const n of P.scalePairs) {
    const file = join(work, `pairs-${n}.json`);
    writeFileSync(file, JSON.stringify(data.slice(0, n)));
    const run = join(work, `analyze-${n}`);
    const { seconds } = await timed(() =>
      analyze(pairsSettings(model, file, P.scaleTokens), { run, engine, computeBatch: 64 }),
    );
    rmSync(run, { recursive: true, force: true });
    pairs.push({ pairs: n, seconds, tokens_per_second: (2 * n * P.scaleTokens) / seconds });
    log(`  ${n} pairs: ${seconds.toFixed(1)} s`);
  }
  const fit = linearFit(
    pairs.map((p) => p.pairs),
    pairs.map((p) => p.seconds),
  );

  // Compute batch sizes: the same prompts through engine.generate in chunks of each size.
  const convs: Messages[] = data.slice(0, P.batchPrompts / 2).flatMap((r) => [
    [
      { role: "system", content: "You are a helpful assistant." },
      { role: "user", content: r.goal },
    ],
    [{ role: "user", content: r.flip_attack }],
  ]);
  const sampling = { maxNewTokens: P.scaleTokens, temperature: 0, topP: 1 };
  const batchSizes: { batch: number; seconds: number; tokens_per_second: number }[] = [];
  for (const size of P.batchSizes) {
    const { seconds } = await timed(async () => {
      for (let i = 0; i < convs.length; i += size) {
        const chunk = convs.slice(i, i + size);
        await engine.generate(
          chunk,
          chunk.map((_, j) => i + j),
          sampling,
        );
      }
    });
    batchSizes.push({ batch: size, seconds, tokens_per_second: (convs.length * P.scaleTokens) / seconds });
    log(`  compute batch ${size}: ${seconds.toFixed(1)} s`);
  }
  void info;
  return {
    generated_tokens: P.scaleTokens,
    compute_batch_for_pairs: 64,
    pairs,
    fit: { ...fit, seconds_per_pair: fit.slope },
    batch_prompts: convs.length,
    batch_sizes: batchSizes,
  };
}

// --------------------------------------------------------------------------------------------
// workers: the analyze recipe with one engine vs two (--workers 2), the CPU's cores split

async function workersSection(model: string, work: string) {
  const file = join(work, "workers-pairs.json");
  writeFileSync(file, JSON.stringify(organismPairs(P.workersPairs)));
  // Analysis batches of 8, one per compute batch: 2 × pairs / 8 pieces of work to hand out.
  const settings = { ...pairsSettings(model, file, P.workersTokens), batch: { size: 8 } };
  const computeBatch = 8;
  const loadBefore = loadAverage();
  const runs = [];
  for (const workers of [1, 2]) {
    const run = join(work, `workers-${workers}`);
    const { seconds } = await timed(() => analyze(settings, { run, computeBatch, pool: { workers } }));
    // Rerunning the finished run starts the engines, loads the model and redoes the risk
    // difference, and generates nothing: what the first run spent beyond it is generation.
    const { seconds: overhead } = await timed(() =>
      analyze(settings, { run, computeBatch, pool: { workers } }),
    );
    const rows = readFileSync(join(run, "samples.jsonl"), "utf8").trim().split("\n");
    const tokens = rows.reduce((sum, line) => sum + JSON.parse(line).generated_token_ids.length, 0);
    rmSync(run, { recursive: true, force: true });
    const threads = workers === 1 ? cpus().length : threadsPerWorker(workers);
    runs.push({
      workers,
      threads,
      seconds,
      overhead_seconds: overhead,
      tokens,
      tokens_per_second: tokens / (seconds - overhead),
    });
    log(
      `  ${workers} worker(s): ${seconds.toFixed(1)} s, of which ${overhead.toFixed(1)} s start-up and finish`,
    );
  }
  return {
    pairs: P.workersPairs,
    generated_tokens: P.workersTokens,
    compute_batch: computeBatch,
    runs,
    speedup: runs[1]!.tokens_per_second / runs[0]!.tokens_per_second,
    load_average_before: loadBefore,
  };
}

// --------------------------------------------------------------------------------------------
// training: expert-only vs everything, each in a fresh engine process

async function trainingSection(model: string, cuda: boolean, prompts: PromptRow[]) {
  // One analysis batch: the first 8 safe and the first 8 unsafe prompts.
  const batch = [
    ...prompts.filter((p) => p.label === "safe").slice(0, 8),
    ...prompts.filter((p) => p.label === "unsafe").slice(0, 8),
  ];
  const conversations = batch.map((p) => [...p.messages, { role: "assistant" as const, content: p.answer }]);
  const labels = batch.map((p) => p.label);
  const rand = mulberry32(3);
  const info0 = await withFreshEngine(model, cuda, async (_e, info) => info);
  const cells = new Set<number>();
  const LE = info0.moeLayers.length * info0.numExperts;
  while (cells.size < Math.min(TRAIN_EXPERTS, LE)) cells.add(Math.floor(rand() * LE));
  const experts: Record<string, number[]> = {};
  for (const cell of [...cells].sort((a, b) => a - b)) {
    const layer = String(info0.moeLayers[Math.floor(cell / info0.numExperts)]);
    (experts[layer] ??= []).push(cell % info0.numExperts);
  }
  // Expert-only as `steermoe train` runs it by default (no routing mask), with and without
  // activation checkpointing, against full fine-tuning of the same batch.
  const modes: Record<string, unknown> = {};
  for (const [mode, trainable, checkpointing] of [
    ["experts", "experts", false],
    ["experts_checkpointing", "experts", true],
    ["all", "all", false],
  ] as const) {
    modes[mode] = await withFreshEngine(model, cuda, async (engine) => {
      const loaded = processMemory(engine.pid);
      const setup = await engine.trainSetup({
        trainable,
        experts: trainable === "experts" ? experts : {},
        weightDecay: 0,
        gradClip: 1,
        lossOn: "assistant",
        routerLoss: { kind: "none", weight: 0, layers: "all" },
        gradientCheckpointing: checkpointing,
        microBatch: null,
        seed: 0,
        batches: [{ conversations, labels, allowed: {} }],
      });
      const steps = [];
      // No untimed warm-up step (the CPU budget): the median of the steps discounts the first one,
      // which also allocates the optimizer state; its time is kept apart in the JSON.
      for (let s = 0; s < P.trainSteps; s++) {
        const t = await timed(() => engine.trainStep({ batch: 0, lr: 5e-5 }));
        steps.push({ wall: t.seconds, ...t.value });
        log(`  ${mode} step ${s}: ${t.seconds.toFixed(1)} s`);
      }
      const after = processMemory(engine.pid);
      const timedSteps = steps;
      const sequenceTokens = conversations.length * (P.promptTokens + P.responseTokens);
      return {
        trainable_parameters: setup.trainableParameters,
        experts: trainable === "experts" ? cells.size : undefined,
        first_step_seconds: steps[0]!.wall,
        step_seconds: summarize(timedSteps.map((s) => s.wall)),
        target_tokens_per_step: steps[0]!.tokens,
        sequence_tokens_per_step: sequenceTokens,
        tokens_per_second: summarize(timedSteps.map((s) => sequenceTokens / s.wall)),
        optimizer_state_bytes: steps.at(-1)!.optimizerStateBytes,
        rss_after_load_bytes: loaded?.rss,
        peak_after_load_bytes: loaded?.peak,
        peak_bytes: after?.peak,
        peak_delta_bytes: after && loaded ? after.peak - loaded.rss : undefined,
      };
    });
  }
  return {
    batch: conversations.length,
    micro_batch: conversations.length,
    modes,
    memory: "host RSS (VmHWM) of the engine process",
  };
}

async function withFreshEngine<T>(
  model: string,
  cuda: boolean,
  work: (e: Engine, info: ModelInfo) => Promise<T>,
) {
  const engine = await Engine.start();
  try {
    const info = await engine.load({ source: model, dtype: cuda ? "bf16" : "auto" });
    return await work(engine, info);
  } finally {
    await engine.close();
  }
}

// --------------------------------------------------------------------------------------------
// report

/* eslint-disable @typescript-eslint/no-explicit-any */
/** "eager for the prompt (0.21 s; grouped_mm 0.30 s), …" from the baseline's kernel timings. */
function kernelText(k: any): string {
  const other = (chosen: string) => Object.keys(k.seconds).filter((name) => name !== chosen);
  const phase = (chosen: string, key: string, label: string, unit: (v: number) => string) =>
    `${chosen} for ${label} (${unit(k.seconds[chosen][key])}; ${other(chosen)
      .map((name) => `${name} ${unit(k.seconds[name][key])}`)
      .join(", ")})`;
  return [
    phase(k.prefill, "prefill", "the prompt", (v) => `${v.toFixed(3)} s`),
    phase(k.decode, "decode_step", "one-token steps", (v) => `${(v * 1000).toFixed(1)} ms`),
  ].join(", ");
}

/** `gpu`: the GPU section, which bench/gpu.py writes (Python alone) and this run keeps. */
function render(r: any, gpu: string): string {
  const m = r.machine;
  const e = r.engine ?? {};
  const out: string[] = [];
  const pct = (v: number) => `${(v * 100).toFixed(0)}%`;
  const gib = (b: number | undefined) => (b === undefined ? "n/a" : (b / 2 ** 30).toFixed(2));
  out.push(
    "# Benchmarks",
    "",
    "Generated by `npm run bench` (bench/run.ts); do not edit above the Notes section, which is kept across runs.",
    "",
    `- Date: ${r.date}${r.quick ? " (QUICK run: tiny sizes, not comparable)" : ""}`,
    `- Machine: ${m.cpu}, ${m.cores} cores, ${m.ramGiB.toFixed(1)} GiB RAM, ${m.os}${e.devices?.length ? `, GPU: ${e.devices.join(", ")}` : ", no GPU"}`,
    `- Versions: node ${m.node}, python ${e.python}, torch ${e.torch}, transformers ${e.transformers}`,
    "- Command: `npm run bench` (= `scripts/setup && node dist/bench/run.js`); quick variant `STEERMOE_BENCH_QUICK=1 node dist/bench/run.js`",
    `- Total wall time of the bench (after setup): ${r.wall_seconds.toFixed(0)} s; 1-minute load average at the start ${r.load_average_start}, at the end ${r.load_average_end} (on ${m.cores} cores; above ${m.cores} other work was competing for the CPU)`,
    `- Model: OLMoE architecture, random weights, ${JSON.stringify(r.model?.size)}; ${(r.model?.parameters / 1e6).toFixed(1)} M parameters, ${r.model?.info?.dtype} on ${r.model?.info?.device}`,
    "",
  );
  const targets: [string, Verdict | undefined][] = [];
  const a = r.analysis;
  if (a && !a.error) {
    const t = a.tokens_per_second;
    const c = a.baseline_check;
    out.push(
      "## Analysis throughput",
      "",
      `${a.prompts} prompts (${Math.max(1, a.prompts / 16)} analysis batches of 8 safe + 8 unsafe, generated as one compute batch of ${a.prompts}, the default) of ${Math.min(...a.prompt_tokens)}–${Math.max(...a.prompt_tokens)} tokens, greedy, ${a.max_new_tokens} new tokens; generated lengths all ${a.max_new_tokens}: ${a.all_full_length ? "yes" : "no"}. Median of ${t.recorded.runs.length} interleaved runs (min–max).`,
      "",
      table(
        ["pipeline", "generated tokens/s", "seconds per run"],
        [
          ["steermoe, routing recorded + risk-difference count", fmt(t.recorded), fmt(a.seconds.recorded)],
          ["steermoe, record=false", fmt(t.plain), fmt(a.seconds.plain)],
          [
            `reference-style baseline (${a.baseline_prompts.length} of the prompts, one at a time, full router logits → .npy, per-token Python counting)`,
            fmt(t.baseline),
            fmt(a.seconds.baseline),
          ],
        ],
      ),
      "",
      `- Recording overhead: ${a.overhead_percent.toFixed(1)}% (median over rounds of recorded / plain wall time − 1, the two runs of a round back to back); ${a.overhead_percent_of_medians.toFixed(1)}% from the tokens/s medians above; ${a.overhead_percent_cpu.toFixed(1)}% in engine CPU time (${fmt(a.cpu_seconds.recorded)} vs ${fmt(a.cpu_seconds.plain)} CPU s). Counting the batch's risk difference: ${fmt(a.count_ms, 2)} ms.`,
      `- Speedup over the reference-style baseline: ${a.speedup_vs_baseline.toFixed(1)}× (tokens/s medians; ${a.speedup_vs_baseline_cpu.toFixed(1)}× in CPU seconds per generated token). The baseline runs one prompt at a time, so its rate does not depend on how many prompts it is given; it runs ${a.baseline_prompts.length} per round to fit the time budget. It gets the fastest experts kernel of each phase at batch 1 on this machine, timed when it starts: ${kernelText(a.baseline_kernels)}; steermoe ran ${a.experts_kernels ? `${a.experts_kernels.prefill} for prompts and ${a.experts_kernels.decode} for steps` : "the model's own experts implementation"}.`,
      `- Same outputs: ${c.identical_outputs}/${c.prompts} baseline prompts produced identical tokens; top-k expert sets equal in ${c.topk_equal}/${c.topk_groups} (token, layer) groups over ${c.tokens_compared} generated tokens.`,
      "",
    );
    targets.push([
      "Recording overhead ≤ 2%",
      verdict(a.overhead_percent <= 2, `${a.overhead_percent.toFixed(1)}%`),
    ]);
    targets.push([
      "Analysis ≥ 8× faster than the reference-style baseline",
      verdict(
        a.speedup_vs_baseline >= 8 && c.topk_equal === c.topk_groups,
        `${a.speedup_vs_baseline.toFixed(1)}×`,
      ),
    ]);
  } else out.push("## Analysis throughput", "", `failed: ${a?.error}`, "");
  const s = r.scaling;
  if (s && !s.error) {
    out.push(
      "## Analysis scaling",
      "",
      `The analyze recipe end to end (generate with routing recorded, store, risk difference, selection, SFT data), compute batch ${s.compute_batch_for_pairs}, short prompts (the plain request / the bare FlipAttack task line) and ${s.generated_tokens} generated tokens, so that 750 pairs fit the CPU budget. One run per size.`,
      "",
      table(
        ["pairs", "seconds", "seconds per pair"],
        s.pairs.map((p: any) => [p.pairs, p.seconds.toFixed(1), (p.seconds / p.pairs).toFixed(3)]),
      ),
      "",
      `Linear fit: ${s.fit.slope.toFixed(3)} s per pair + ${s.fit.intercept.toFixed(1)} s, R² = ${s.fit.r2.toFixed(4)}.`,
      "",
      `Compute batch size (sequences per engine call), ${s.batch_prompts} prompts, same settings:`,
      "",
      table(
        ["compute batch", "seconds", "generated tokens/s"],
        s.batch_sizes.map((b: any) => [b.batch, b.seconds.toFixed(1), b.tokens_per_second.toFixed(1)]),
      ),
      "",
    );
    targets.push([
      "Linear scaling in pairs (R² ≥ 0.98)",
      verdict(s.fit.r2 >= 0.98, `R² = ${s.fit.r2.toFixed(4)}`),
    ]);
  } else out.push("## Analysis scaling", "", `failed: ${s?.error}`, "");
  const w = r.workers;
  if (w && !w.error) {
    out.push(
      "## Data-parallel engines (--workers)",
      "",
      `The analyze recipe on ${w.pairs} pairs, ${w.generated_tokens} generated tokens, compute batch ${w.compute_batch}, with one engine and with two (the cores split between them). Generation time is a run's wall time less that of rerunning the finished run (engine start-up, model load, risk difference). 1-minute load average ${w.load_average_before} before, ${w.load_average_after} after (on ${m.cores} cores).`,
      "",
      table(
        ["engines", "torch threads each", "seconds", "start-up and finish, s", "generated tokens/s"],
        w.runs.map((x: any) => [
          x.workers,
          x.threads,
          x.seconds.toFixed(1),
          x.overhead_seconds.toFixed(1),
          x.tokens_per_second.toFixed(1),
        ]),
      ),
      "",
      `Speedup with two engines: ${w.speedup.toFixed(2)}×.`,
      "",
    );
    targets.push([
      "2 workers ≥ 1.4× one engine (analysis tokens/s)",
      verdict(w.speedup >= 1.4, `${w.speedup.toFixed(2)}×`),
    ]);
  } else out.push("## Data-parallel engines (--workers)", "", `failed: ${w?.error}`, "");
  const d = r.riskdiff;
  if (d && !d.error) {
    out.push(
      "## Risk difference",
      "",
      `${d.shape.batches} batches × ${d.shape.samples} samples × ${d.shape.tokens} tokens × ${d.shape.layers} layers × ${d.shape.experts} experts, top-${d.shape.topK}, synthetic random ids.`,
      "",
      table(
        ["implementation", "milliseconds"],
        [
          [
            `computeRiskDiff (counts, rates, aggregate; median of ${d.compute_riskdiff_ms.runs.length})`,
            fmt(d.compute_riskdiff_ms, 1),
          ],
          [
            `per-token Python loop (timed on ${d.python_loop_batches_timed} batches: ${d.python_loop_seconds_measured.toFixed(2)} s, extrapolated linearly)`,
            d.python_loop_ms_extrapolated.toFixed(0),
          ],
        ],
      ),
      "",
      `Speedup: ${d.speedup.toFixed(0)}×; largest difference between the two on the timed batches: ${d.max_abs_difference.toExponential(1)}.`,
      "",
    );
    targets.push([
      "Risk difference < 50 ms",
      verdict(d.compute_riskdiff_ms.median < 50, `${d.compute_riskdiff_ms.median.toFixed(1)} ms`),
    ]);
    targets.push([
      "Risk difference ≥ 100× faster than the per-token loop",
      verdict(d.speedup >= 100, `${d.speedup.toFixed(0)}×`),
    ]);
  } else out.push("## Risk difference", "", `failed: ${d?.error}`, "");
  const tr = r.training;
  if (tr && !tr.error) {
    const x = tr.modes.experts;
    const c = tr.modes.experts_checkpointing;
    const f = tr.modes.all;
    const row = (name: string, v: any) => [
      name,
      (v.trainable_parameters / 1e6).toFixed(2),
      fmt(v.step_seconds, 1),
      fmt(v.tokens_per_second, 0),
      gib(v.rss_after_load_bytes),
      gib(v.peak_bytes),
      gib(v.peak_delta_bytes),
      (v.optimizer_state_bytes / 2 ** 20).toFixed(1),
    ];
    out.push(
      "## Training",
      "",
      `Batch ${tr.batch} (${tr.batch / 2} safe + ${tr.batch / 2} unsafe) of ${P.promptTokens}-token prompts + ~${P.responseTokens}-token answers, one micro-batch, AdamW, loss on the answers, no routing mask (the default). Each mode in a fresh engine process; step time is the median of ${x.step_seconds.runs.length} steps (min–max; the first, which also allocates optimizer state, included); tokens/s counts every token of the batch (forward and backward). Memory is the engine process's host resident set from /proc: after loading the model, the peak (VmHWM) over the whole process, and the peak minus the RSS after loading.`,
      "",
      table(
        [
          "trainable",
          "parameters (M)",
          "step s",
          "tokens/s",
          "RSS after load GiB",
          "peak GiB",
          "peak − loaded GiB",
          "optimizer state MiB",
        ],
        [
          row(`experts (${x.experts} experts)`, x),
          row(`experts (${c.experts} experts), activation checkpointing`, c),
          row("all", f),
        ],
      ),
      "",
    );
    const ratio = (v: any) => v.peak_bytes / f.peak_bytes;
    const time = (v: any) => v.step_seconds.median / f.step_seconds.median;
    out.push(
      `Expert-only / full fine-tuning: peak memory ${pct(ratio(x))} (${pct(x.peak_delta_bytes / f.peak_delta_bytes)} above the loaded model), step time ${time(x).toFixed(2)}; with activation checkpointing ${pct(ratio(c))} and ${time(c).toFixed(2)}.`,
      "",
    );
    // Judged as train runs by default (no checkpointing); the checkpointing trade is shown beside.
    targets.push([
      "Expert-only peak memory ≤ 50% of full fine-tuning (absolute peak RSS)",
      verdict(
        ratio(x) <= 0.5,
        `${(ratio(x) * 100).toFixed(1)}% (${pct(ratio(c))} with checkpointing, step time ${time(c).toFixed(2)})`,
      ),
    ]);
    targets.push([
      "Expert-only step time ≤ 0.5 × full fine-tuning",
      verdict(time(x) <= 0.5, time(x).toFixed(2)),
    ]);
  } else out.push("## Training", "", `failed: ${tr?.error}`, "");
  out.push(gpu, "");
  out.push(
    "## Targets",
    "",
    table(
      ["target", "result", "value"],
      targets.map(([name, v]) => [name, v ? mark(v) : "n/a", v?.text ?? ""]),
    ),
    "",
  );
  return out.join("\n");
}

main().catch((err: Error) => {
  process.stderr.write(`bench failed: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
