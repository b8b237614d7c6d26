// The command line: parses flags into the recipes' configs and turns failures into one line.
import { join } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { EngineDiedError, EngineError } from "./components/engine/client.js";
import { UserError, zodProblem } from "./components/errors.js";
import { z } from "zod";
import {
  analyze,
  parseAnalyzeSettings,
  type AnalyzeSettings,
  type AnalyzeSummary,
} from "./recipes/analyze.js";
import { overlay, readConfigFile } from "./components/io/run.js";
import { demo } from "./recipes/demo.js";
import { generate } from "./recipes/generate.js";
import { formatModelInfo, inspect } from "./recipes/inspect.js";
import { tinyModel } from "./recipes/tiny-model.js";
import { report } from "./recipes/report.js";
import { parseTrainSettings, train, type TrainSummary } from "./recipes/train.js";
import { applyDelta } from "./recipes/apply-delta.js";
import { evaluate, formatResults, parseEvalSettings } from "./recipes/evaluate.js";
import { buildOrganism, ORGANISM_SETS } from "./recipes/organism.js";
import { basename } from "node:path";
import { writeSyntheticData } from "./components/data/synthetic.js";
import { readSteerFile, steerFromRun, type Steering } from "./components/method/steering.js";

const int = (min: number) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected a whole number >= ${min}`);
  return n;
};
const num = (value: string) => {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError("expected a number");
  return n;
};
const batch = (value: string) => (value === "auto" ? "auto" : int(1)(value));

interface ModelFlags {
  model: string;
  dtype: "auto" | "bf16" | "fp16" | "fp32";
  device: string;
  trustRemoteCode?: boolean;
  verbose?: boolean;
}

function modelOptions(command: Command, flag = "--model"): Command {
  return command
    .requiredOption(`${flag} <path|hub-id>`, "model folder (config.json, safetensors, tokenizer) or hub id")
    .addOption(
      new Option("--dtype <dtype>", "weights dtype")
        .choices(["auto", "bf16", "fp16", "fp32"])
        .default("auto"),
    )
    .option("--device <device>", "auto, cpu, cuda or cuda:N", "auto")
    .option("--trust-remote-code", "run code shipped with the model (off unless asked)");
}

const modelConfig = (flags: ModelFlags) => ({
  source: flags.model,
  dtype: flags.dtype,
  device: flags.device,
  trustRemoteCode: flags.trustRemoteCode ?? false,
});

/** First Ctrl-C asks the running job to stop after the batch in hand; a second one stops now. */
function interruptible(): AbortSignal {
  const controller = new AbortController();
  process.on("SIGINT", () => {
    if (controller.signal.aborted) {
      process.stderr.write("\nsteermoe: stopped\n");
      process.exit(130);
    }
    process.stderr.write("\nsteermoe: stopping after the current batch (Ctrl-C again to stop now)\n");
    controller.abort();
  });
  return controller.signal;
}

interface AnalyzeFlags {
  run: string;
  config?: string;
  data?: string;
  preset?: string;
  keepFiltered?: boolean;
  model?: string;
  dtype?: string;
  device?: string;
  trustRemoteCode?: boolean;
  batchSize?: number;
  safeRatio?: number;
  shuffleSeed?: number;
  maxNewTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  computeBatch?: "auto" | number;
  qc?: "on" | "off";
  judge?: "keyword" | "openai";
  judgeUrl?: string;
  judgeModel?: string;
  judgeKeyEnv?: string;
  tokens?: string;
  batchThreshold?: number;
  batchTopK?: number;
  globalThreshold?: number;
  globalTopK?: number;
  randomExperts?: boolean;
  refusalSource?: string;
  refusalTemplate?: string;
}

/** The config file's settings with the flags that were given laid over them. */
function analyzeSettings(f: AnalyzeFlags): AnalyzeSettings {
  const fromFile = f.config ? readConfigFile(f.config) : {};
  const endpoint = { baseUrl: f.judgeUrl, model: f.judgeModel, apiKeyEnv: f.judgeKeyEnv };
  const settings = overlay(fromFile, {
    model: { source: f.model, dtype: f.dtype, device: f.device, trustRemoteCode: f.trustRemoteCode },
    data: { file: f.data, preset: f.preset, keepFiltered: f.keepFiltered },
    batch: { size: f.batchSize, safeRatio: f.safeRatio, shuffleSeed: f.shuffleSeed },
    sampling: { maxNewTokens: f.maxNewTokens, temperature: f.temperature, topP: f.topP, seed: f.seed },
    qc: f.qc === undefined ? undefined : f.qc === "on",
    judge: f.judge === "openai" ? { kind: "openai", ...endpoint } : f.judge && { kind: f.judge },
    tokens: f.tokens,
    selection: {
      batchThreshold: f.batchThreshold,
      batchTopK: f.batchTopK,
      globalThreshold: f.globalThreshold,
      globalTopK: f.globalTopK,
      randomExperts: f.randomExperts,
    },
    refusal: {
      source: f.refusalSource,
      template: f.refusalTemplate,
      endpoint: f.refusalSource === "openai" ? endpoint : undefined,
    },
  });
  if (!(settings.model as { source?: string }).source) {
    throw new UserError("analyze needs --model (or model.source in the --config file)");
  }
  if (!(settings.data as { file?: string }).file) {
    throw new UserError("analyze needs --data (or data.file in the --config file)");
  }
  return parseAnalyzeSettings(settings);
}

interface TrainFlags {
  run?: string;
  data?: string;
  model?: string;
  dtype?: string;
  device?: string;
  out?: string;
  config?: string;
  batchSize?: number;
  experts?: string;
  trainable?: string;
  routingMask?: "on" | "off";
  lossOn?: string;
  routerLoss?: string;
  routerLossWeight?: number;
  routerLossLayers?: string;
  lr?: number;
  warmupRatio?: number;
  weightDecay?: number;
  gradClip?: number;
  epochs?: number;
  shuffle: boolean;
  seed?: number;
  microBatch?: number;
  gradientCheckpointing?: boolean;
  checkpointEvery?: number;
}

function trainSettings(f: TrainFlags) {
  const fromFile = f.config ? readConfigFile(f.config) : {};
  return parseTrainSettings(
    overlay(fromFile, {
      run: f.run,
      data: f.data,
      model: { source: f.model, dtype: f.dtype, device: f.device },
      batchSize: f.batchSize,
      experts: f.experts,
      trainable: f.trainable,
      routingMask: f.routingMask === undefined ? undefined : f.routingMask === "on",
      lossOn: f.lossOn,
      routerLoss: { kind: f.routerLoss, weight: f.routerLossWeight, layers: f.routerLossLayers },
      lr: f.lr,
      warmupRatio: f.warmupRatio,
      weightDecay: f.weightDecay,
      gradClip: f.gradClip,
      epochs: f.epochs,
      shuffle: f.shuffle ? undefined : false,
      seed: f.seed,
      microBatch: f.microBatch,
      gradientCheckpointing: f.gradientCheckpointing,
      checkpointEvery: f.checkpointEvery,
    }),
  );
}

interface SteerFlags {
  steer?: string;
  steerFrom?: string;
  top?: number;
  steerMode?: "deactivate" | "activate";
}

function steering(f: SteerFlags): Steering | undefined {
  if (f.steer && f.steerFrom) throw new UserError("give --steer or --steer-from, not both");
  if (f.steer) return readSteerFile(f.steer);
  if (f.steerFrom) return steerFromRun(f.steerFrom, f.top ?? 10, f.steerMode ?? "deactivate");
  return undefined;
}

interface EvalFlags extends SteerFlags {
  model?: string[];
  out: string;
  config?: string;
  jailbreaks?: string;
  benign?: string;
  benignSplit?: string;
  limit?: number;
  maxNewTokens?: number;
  temperature?: number;
  seed?: number;
  computeBatch?: "auto" | number;
  judge?: "keyword" | "openai";
  judgeUrl?: string;
  judgeModel?: string;
  judgeKeyEnv?: string;
}

/** "[name=]path[@delta]" → one model of the comparison. */
function evalModel(spec: string) {
  const [, name, path, delta] = /^(?:([^=@]+)=)?([^@]+)(?:@(.+))?$/.exec(spec) ?? [];
  if (!path) throw new UserError(`--model ${spec}: expected [name=]path[@delta]`);
  return { name: name ?? basename(path), model: { source: path }, ...(delta && { delta }) };
}

function evalSettings(f: EvalFlags) {
  const fromFile = f.config ? readConfigFile(f.config) : {};
  const settings = overlay(fromFile, {
    models: f.model?.map(evalModel),
    jailbreaks: f.jailbreaks,
    benign: f.benign,
    benignSplit: f.benignSplit,
    limit: f.limit,
    steer: steering(f),
    sampling: { maxNewTokens: f.maxNewTokens, temperature: f.temperature, seed: f.seed },
    judge:
      f.judge === "openai"
        ? { kind: "openai", baseUrl: f.judgeUrl, model: f.judgeModel, apiKeyEnv: f.judgeKeyEnv }
        : f.judge && { kind: f.judge },
  });
  if (!settings.models) throw new UserError("eval needs at least one --model");
  if (!settings.jailbreaks && !settings.benign) {
    Object.assign(settings, ORGANISM_SETS);
  }
  return parseEvalSettings(settings);
}

function formatTrainSummary(s: TrainSummary): string {
  if (!s.complete) {
    return `stopped at step ${s.steps}/${s.totalSteps} (checkpoint saved); rerun the same command to resume → ${s.out}`;
  }
  return [
    `${s.resumed ? "resumed and finished" : "done"}: ${s.steps} steps, final loss ${s.finalLoss?.toFixed(4)}`,
    s.trainedExperts
      ? `trained experts: ${s.trainedExperts} of ${s.totalExperts}`
      : "trained: every parameter of the chosen kind",
    `model → ${join(s.out, "final_model")}`,
  ].join("\n");
}

function formatAnalyzeSummary(s: AnalyzeSummary): string {
  if (!s.complete) {
    return `stopped after ${s.batchesDone}/${s.batches} batches; rerun the same command to resume → ${s.run}`;
  }
  const lines = [
    `${s.resumed ? "resumed and finished" : "done"}: ${s.pairs} pairs in ${s.batches} batches; ` +
      `${s.keptBatches} batches and ${s.keptPairs} pairs kept after quality control`,
    `unsafe experts: ${s.globalExperts!.length} global (mean risk_diff above the threshold), ${s.unionExperts} in the union of per-batch sets`,
  ];
  const top = s.globalExperts!.slice(0, 10);
  if (top.length) lines.push("top experts: " + top.map((e) => `${e.label} ${e.score.toFixed(3)}`).join(", "));
  lines.push(`run folder: ${s.run}`);
  return lines.join("\n");
}

export function program(): Command {
  const cli = new Command("steermoe")
    .description("Find and repair the experts that carry unsafe behaviour in Mixture-of-Experts models")
    .option("--verbose", "show the engine's log and stack traces")
    // Commander's own errors (unknown flag, bad value) become one line like ours.
    .configureOutput({
      outputError: (text, write) =>
        write(
          `steermoe: ${text
            .replace(/^error: /, "")
            .trim()
            .replace(/\s*\n\s*/g, " ")} (see --help)\n`,
        ),
    });

  modelOptions(cli.command("inspect").description("describe a model's MoE layout and parameter counts"))
    .option("--json", "print JSON")
    .action(async (flags: ModelFlags & { json?: boolean }) => {
      const { model, engine } = await inspect(modelConfig(flags), { verbose: cli.opts().verbose });
      if (flags.json) console.log(JSON.stringify({ ...model, engine }, null, 2));
      else console.log(formatModelInfo(model));
    });

  modelOptions(
    cli.command("generate").description("generate for chat conversations, recording every token's experts"),
  )
    .requiredOption("--input <file>", "conversations: JSON array or JSONL of {id?, messages}")
    .requiredOption("--out <dir>", "output folder")
    .option("--max-new-tokens <n>", "tokens to generate per sample", int(1), 128)
    .option("--temperature <t>", "sampling temperature (0 = greedy)", num, 1.0)
    .option("--top-p <p>", "nucleus sampling mass", num, 1.0)
    .option("--seed <n>", "sample i is drawn with seed + i", int(0), 42)
    .option("--batch-size <n|auto>", "sequences run at once (auto: 16 on CPU, 64 on GPU)", batch, "auto")
    .option("--replay", "conversations end with the response: record its routing, do not generate")
    .option("--steer <file>", "switch experts off/on: {deactivate: [{layer, expert}], activate: [...]}")
    .option("--steer-from <run>", "switch off the top experts of an analysis run")
    .option("--top <n>", "with --steer-from: how many experts (default 10)", int(1))
    .addOption(
      new Option("--steer-mode <mode>", "with --steer-from: deactivate (default) or activate").choices([
        "deactivate",
        "activate",
      ]),
    )
    .option("--overwrite", "replace an existing output folder")
    .action(
      async (
        flags: ModelFlags & {
          input: string;
          out: string;
          maxNewTokens: number;
          temperature: number;
          topP: number;
          seed: number;
          batchSize: "auto" | number;
          replay?: boolean;
          overwrite?: boolean;
        } & SteerFlags,
      ) => {
        const summary = await generate(
          {
            model: modelConfig(flags),
            input: flags.input,
            out: flags.out,
            sampling: {
              maxNewTokens: flags.maxNewTokens,
              temperature: flags.temperature,
              topP: flags.topP,
              seed: flags.seed,
            },
            batchSize: flags.batchSize,
            replay: flags.replay ?? false,
            overwrite: flags.overwrite ?? false,
            steer: steering(flags),
          },
          { engine: { verbose: cli.opts().verbose }, signal: interruptible() },
        );
        const state = summary.complete ? "done" : "stopped early";
        console.log(
          `${state}: ${summary.samples}/${summary.total} samples, ${summary.generatedTokens} response tokens ` +
            `in ${summary.seconds.toFixed(1)} s → ${summary.out}`,
        );
        if (!summary.complete) process.exitCode = 130;
      },
    );

  cli
    .command("analyze")
    .description("find the experts that fire more under jailbreak (mixed batches, QC, risk difference)")
    .requiredOption("--run <dir>", "run folder (resumed if it exists with the same settings)")
    .option("--config <file>", "settings file (JSON or YAML); flags override it")
    .option("--data <file>", "jailbreak dataset: JSON array or JSONL")
    .option("--preset <name>", "dataset format (default flipattack)")
    .option("--keep-filtered", "keep records the preset drops (flipattack: failed jailbreaks)")
    .option("--model <path|hub-id>", "model folder or hub id")
    .addOption(
      new Option("--dtype <dtype>", "weights dtype (default auto)").choices(["auto", "bf16", "fp16", "fp32"]),
    )
    .option("--device <device>", "auto, cpu, cuda or cuda:N (default auto)")
    .option("--trust-remote-code", "run code shipped with the model")
    .option("--batch-size <n>", "samples per analysis batch (default 16)", int(2))
    .option("--safe-ratio <r>", "share of safe samples per batch (default 0.5)", num)
    .option("--shuffle-seed <n>", "shuffle pairs before batching (default: dataset order)", int(0))
    .option("--max-new-tokens <n>", "tokens generated per sample (default 128)", int(1))
    .option("--temperature <t>", "sampling temperature, 0 = greedy (default 1.0)", num)
    .option("--top-p <p>", "nucleus sampling mass (default 1.0)", num)
    .option("--seed <n>", "generation seed (default 42)", int(0))
    .option("--compute-batch <n|auto>", "sequences the engine runs at once (auto: 16 CPU, 64 GPU)", batch)
    .addOption(
      new Option(
        "--qc <on|off>",
        "keep only pairs whose plain request was refused and jailbreak not (default on)",
      ).choices(["on", "off"]),
    )
    .addOption(new Option("--judge <kind>", "refusal judge (default keyword)").choices(["keyword", "openai"]))
    .option("--judge-url <url>", "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    .option("--judge-model <name>", "model name at the endpoint")
    .option("--judge-key-env <name>", "environment variable holding the API key (default OPENAI_API_KEY)")
    .addOption(
      new Option("--tokens <part>", "tokens the risk difference counts (default generation)").choices([
        "generation",
        "prompt",
        "all",
      ]),
    )
    .option("--batch-threshold <x>", "per-batch selection: risk_diff above this (default 0.0)", num)
    .option("--batch-top-k <n>", "per-batch selection: at most this many experts (default 50)", int(1))
    .option("--global-threshold <x>", "global selection: mean risk_diff above this (default 0.05)", num)
    .option("--global-top-k <n>", "global selection: at most this many experts (default 50)", int(1))
    .option(
      "--random-experts",
      "ablation: also draw each batch's experts at random, as many as its real set (seed + batch_idx)",
    )
    .addOption(
      new Option("--refusal-source <source>", "SFT target for jailbreaks (default self)").choices([
        "self",
        "template",
        "openai",
      ]),
    )
    .option("--refusal-template <text>", "the sentence used by --refusal-source template")
    .action(async (flags: AnalyzeFlags) => {
      const summary = await analyze(analyzeSettings(flags), {
        run: flags.run,
        computeBatch: flags.computeBatch,
        engine: { verbose: cli.opts().verbose },
        signal: interruptible(),
      });
      console.log(formatAnalyzeSummary(summary));
      if (!summary.complete) process.exitCode = 130;
    });

  cli
    .command("train")
    .description("fine-tune only the unsafe experts, replaying the analysis batches (or train on --data)")
    .option("--run <dir>", "analysis run to train from")
    .option("--data <file>", "or: conversations ending with the assistant target (JSON array or JSONL)")
    .option("--model <path|hub-id>", "model (default: the analysed one; required with --data)")
    .addOption(new Option("--dtype <dtype>", "weights dtype").choices(["auto", "bf16", "fp16", "fp32"]))
    .option("--device <device>", "auto, cpu, cuda or cuda:N")
    .option("--out <dir>", "output folder (default RUN/train)")
    .option("--config <file>", "settings file (JSON or YAML); flags override it")
    .option("--batch-size <n>", "batch size for --data (default 16)", int(1))
    .option("--experts <set>", "batch-union (default), global, random, or a file of {layer, expert}")
    .addOption(
      new Option("--trainable <what>", "experts (default), all (full fine-tune), router").choices([
        "experts",
        "all",
        "router",
      ]),
    )
    .addOption(
      new Option(
        "--routing-mask <on|off>",
        "route each batch only to its own unsafe experts (default off)",
      ).choices(["on", "off"]),
    )
    .addOption(
      new Option("--loss-on <part>", "assistant tokens (default) or all").choices(["assistant", "all"]),
    )
    .addOption(
      new Option("--router-loss <kind>", "router-consistency KL (default none)").choices([
        "none",
        "forward",
        "reverse",
        "symmetric",
      ]),
    )
    .option("--router-loss-weight <w>", "weight of the router loss (default 0.1)", num)
    .addOption(
      new Option("--router-loss-layers <which>", "all (default) or masked layers only").choices([
        "all",
        "masked",
      ]),
    )
    .option("--lr <x>", "peak learning rate (default 5e-5)", num)
    .option("--warmup-ratio <x>", "share of steps warming up (default 0.1)", num)
    .option("--weight-decay <x>", "AdamW weight decay (default 0)", num)
    .option("--grad-clip <x>", "gradient norm clip (default 1.0)", num)
    .option("--epochs <n>", "passes over the batches (default 3)", num)
    .option("--no-shuffle", "keep the batch order in every epoch")
    .option("--seed <n>", "seed for batch order and initialisation (default 42)", int(0))
    .option("--micro-batch <n>", "split each batch into micro-batches (still one step per batch)", int(1))
    .option("--gradient-checkpointing", "trade compute for activation memory")
    .option("--checkpoint-every <n>", "steps between checkpoints (default 50)", int(1))
    .action(async (flags: TrainFlags) => {
      const summary = await train(trainSettings(flags), {
        out: flags.out,
        engine: { verbose: cli.opts().verbose },
        signal: interruptible(),
      });
      console.log(formatTrainSummary(summary));
      if (!summary.complete) process.exitCode = 130;
    });

  modelOptions(
    cli
      .command("apply-delta")
      .description("rebuild a fine-tuned model from its base and an expert delta")
      .requiredOption("--delta <file>", "expert_delta.safetensors written by train")
      .requiredOption("--out <dir>", "model folder to write"),
    "--base",
  ).action(async (flags: ModelFlags & { base: string; delta: string; out: string }) => {
    const experts = await applyDelta(
      { model: modelConfig({ ...flags, model: flags.base }), delta: flags.delta, out: flags.out },
      { verbose: cli.opts().verbose },
    );
    console.log(`applied ${experts} experts → ${flags.out}`);
  });

  cli
    .command("eval")
    .description(
      "attack success, plain-goal refusal and over-refusal, for one or several models side by side",
    )
    .option(
      "--model <[name=]path[@delta]>",
      "a model folder, a train output, or base@expert_delta.safetensors (repeat to compare)",
      (value: string, list: string[] = []) => [...list, value],
    )
    .requiredOption("--out <dir>", "folder for results.json and samples.jsonl")
    .option("--config <file>", "settings file (JSON or YAML); flags override it")
    .option("--jailbreaks <file>", "FlipAttack-format held-out set (default: the organism's)")
    .option("--benign <file>", "harmless requests {id?, prompt} (default: the organism's held-out split)")
    .option("--benign-split <name>", "keep only records whose split is this")
    .option("--limit <n>", "at most this many items per set", int(1))
    .option("--max-new-tokens <n>", "tokens generated per response (default 64)", int(1))
    .option("--temperature <t>", "sampling temperature (default 0: greedy)", num)
    .option("--seed <n>", "sampling seed (default 42)", int(0))
    .option("--compute-batch <n|auto>", "sequences the engine runs at once", batch)
    .addOption(new Option("--judge <kind>", "refusal judge (default keyword)").choices(["keyword", "openai"]))
    .option("--judge-url <url>", "OpenAI-compatible endpoint")
    .option("--judge-model <name>", "model name at the endpoint")
    .option("--judge-key-env <name>", "environment variable holding the API key")
    .option(
      "--steer <file>",
      "also evaluate each model steered: {deactivate: [{layer, expert}], activate: [...]}",
    )
    .option(
      "--steer-from <run>",
      "also evaluate each model with the top experts of an analysis run switched off",
    )
    .option("--top <n>", "with --steer-from: how many experts (default 10)", int(1))
    .addOption(
      new Option("--steer-mode <mode>", "with --steer-from: deactivate (default) or activate").choices([
        "deactivate",
        "activate",
      ]),
    )
    .action(async (flags: EvalFlags) => {
      const results = await evaluate(evalSettings(flags), {
        out: flags.out,
        computeBatch: flags.computeBatch,
        engine: { verbose: cli.opts().verbose },
      });
      console.log(formatResults(results));
      console.log(`results → ${flags.out}`);
    });

  cli
    .command("build-organism")
    .description("rebuild the model organism and its synthetic data from the seed (minutes on a CPU)")
    .option("--out <dir>", "folder for data/, model/ and manifest.json", "organism")
    .action(async (flags: { out: string }) => {
      const model = await buildOrganism(flags.out, { verbose: cli.opts().verbose });
      console.log(`organism → ${model}`);
    });

  cli
    .command("report")
    .description("write one self-contained report.html for a run (works on unfinished runs too)")
    .requiredOption("--run <dir>", "run folder")
    .option("--out <file>", "where to write the page (default RUN/report.html)")
    .action(async (flags: { run: string; out?: string }) => {
      const result = await report(flags.run, flags.out);
      if (result.missing.length) console.log(`not in the run yet: ${result.missing.join(", ")}`);
      console.log(`report → ${result.path}`);
    });

  cli
    .command("synthetic-data")
    .description("write the seeded synthetic FlipAttack-style dataset (train, held-out, benign)")
    .requiredOption("--out <dir>", "folder for train.json, heldout.json, benign.json, manifest.json")
    .option("--seed <n>", "random seed", int(0), 0)
    .action((flags: { out: string; seed: number }) => {
      const manifest = writeSyntheticData(flags.out, flags.seed);
      console.log(`wrote ${JSON.stringify(manifest.counts)} → ${flags.out}`);
    });

  cli
    .command("tiny-model")
    .description("build a tiny random MoE model folder (for tests and examples; no network)")
    .addOption(
      new Option("--arch <arch>", "architecture")
        .choices(["olmoe", "mixtral", "qwen2_moe", "qwen3_moe", "llama"])
        .default("olmoe"),
    )
    .requiredOption("--out <dir>", "model folder to create")
    .option("--seed <n>", "random seed", int(0), 0)
    .option("--layers <n>", "decoder layers", int(1))
    .option("--experts <n>", "experts per MoE layer", int(2))
    .option("--top-k <n>", "experts per token", int(1))
    .option("--hidden <n>", "hidden size", int(8))
    .action(
      async (flags: {
        arch: string;
        out: string;
        seed: number;
        layers?: number;
        experts?: number;
        topK?: number;
        hidden?: number;
      }) => {
        const result = await tinyModel(
          {
            arch: flags.arch,
            out: flags.out,
            seed: flags.seed,
            size: { layers: flags.layers, experts: flags.experts, top_k: flags.topK, hidden: flags.hidden },
          },
          { verbose: cli.opts().verbose },
        );
        console.log(`built ${flags.arch} with ${result.parameters} parameters → ${result.path}`);
      },
    );

  cli
    .command("demo")
    .description(
      "the whole method on the model organism: analyze → train the unsafe experts → eval before/after",
    )
    .option("--out <dir>", "run folder", "runs/demo")
    .option("--overwrite", "replace an existing run folder")
    .action(async (flags: { out: string; overwrite?: boolean }) => {
      const result = await demo(
        { out: flags.out, overwrite: flags.overwrite ?? false, signal: interruptible() },
        { verbose: cli.opts().verbose },
      );
      if (!result.complete) {
        console.log(`stopped; rerun with --overwrite to start again → ${result.run}`);
        process.exitCode = 130;
        return;
      }
      console.log("\n" + formatResults(result.results));
      console.log(`\nexperts trained: ${result.trainedExperts} of ${result.totalExperts}`);
      console.log(`run folder: ${result.run}`);
      console.log(`report: ${result.report}`);
    });

  return cli;
}

export async function main(argv: string[]): Promise<void> {
  const cli = program();
  try {
    await cli.parseAsync(argv);
  } catch (err) {
    const verbose = Boolean(cli.opts().verbose);
    if (err instanceof UserError || err instanceof EngineDiedError) {
      console.error(`steermoe: ${err.message}`);
    } else if (err instanceof EngineError) {
      console.error(
        `steermoe: ${err.type === "EngineError" ? "" : `engine ${err.type}: `}${err.message.split("\n")[0]}`,
      );
      if (verbose && err.traceback) console.error(err.traceback);
    } else if (err instanceof z.ZodError) {
      console.error(`steermoe: ${zodProblem(err)}`);
      if (verbose) console.error(err.stack);
    } else {
      console.error(`steermoe: internal error: ${(err as Error).message}`);
      if (verbose) console.error((err as Error).stack);
      else console.error("(run with --verbose for the stack trace)");
    }
    process.exitCode = 1;
  }
}
