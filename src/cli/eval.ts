// steermoe eval: flags → EvalSettings. Models come from --model [name=]path[@delta] (repeatable);
// the common model flags apply to each of them.
import { basename } from "node:path";
import { InvalidArgumentError, type Command } from "commander";
import { evaluate, EvalSettings, formatResults, parseEvalSettings } from "../recipes/evaluate.js";
import { ORGANISM_SETS } from "../recipes/organism.js";
import { UserError } from "../components/errors.js";
import type { PoolOptions } from "../components/engine/pool.js";
import { endpointFlags, judgeOptions } from "./judge.js";
import { benchmarkOptions } from "./benchmark.js";
import {
  computeBatchOption,
  encodingOption,
  maxMemoryOption,
  poolOptions,
  modelOptions,
  requireSetting,
  samplingOptions,
  SettingOption,
  settingOptions,
  settingsFromFlags,
  generatorHandle,
  backendOptions,
} from "./flags.js";
import { steering, steerOptions } from "./steer.js";
import { requireLocal } from "../components/servers/generator.js";

/** "[name=]path[@delta]" → one model of the comparison. */
function evalModel(spec: string) {
  const [, name, path, delta] = /^(?:([^=@]+)=)?([^@]+)(?:@(.+))?$/.exec(spec) ?? [];
  if (!path) throw new UserError(`--model ${spec}: expected [name=]path[@delta]`);
  return { name: name ?? basename(path), model: { source: path }, ...(delta && { delta }) };
}

/** "0,0.25,1" → [0, 0.25, 1]. */
function intensities(list: string): number[] {
  return list.split(",").map((item) => {
    const t = Number(item);
    // Decimal only: Number() would read 0x10 as 16 and 1e1 as 10 without a word.
    if (!/^\s*\d+(\.\d+)?\s*$/.test(item) || !Number.isFinite(t) || t < 0)
      throw new InvalidArgumentError(`expected intensities >= 0 separated by commas, got '${item}'`);
    return t;
  });
}

export function evalCommand(cli: Command): void {
  const command = cli
    .command("eval")
    .description(
      "attack success, plain-goal refusal and over-refusal, for one or several models side by side",
    )
    .addOption(
      new SettingOption(
        "--model <[name=]path[@delta]>",
        "a model folder, a train output, or base@expert_delta.safetensors (repeat to compare)",
        "models",
      ).argParser((spec: string, list: unknown[] = []) => [...list, evalModel(spec)]),
    )
    .requiredOption("--out <dir>", "folder for results.json and samples.jsonl");
  // --dtype, --device, --trust-remote-code: for every model of the comparison.
  modelOptions(command, "models[].model");
  settingOptions(command, EvalSettings, [
    ["--jailbreaks <file>", "jailbreaks", "FlipAttack-format held-out set (default: the organism's)"],
    ["--benign <file>", "benign", "harmless requests {id?, prompt} (default: the organism's held-out split)"],
    ["--benign-split <name>", "benignSplit", "keep only records whose split is this"],
  ]);
  benchmarkOptions(command, "a standard benchmark, scored per category");
  command.addOption(encodingOption(EvalSettings, "encoding"));
  settingOptions(command, EvalSettings, [
    ["--benchmark-system <text>", "benchmarkSystem", "system prompt before each benchmark prompt"],
    ["--limit <n>", "limit", "at most this many items per set (per benchmark: harmful and benign each)"],
  ]);
  samplingOptions(command, EvalSettings);
  command.addOption(
    new SettingOption(
      "--steer-sweep <list>",
      "with --steer or --steer-from: evaluate at each of these multiples of the map, e.g. 0,0.5,1,2",
      "steerSweep",
    ).argParser(intensities),
  );
  command.addOption(computeBatchOption()).addOption(maxMemoryOption());
  poolOptions(command);
  backendOptions(command);
  judgeOptions(command, EvalSettings);
  steerOptions(command, "also evaluate each model steered");
  command.action(
    async (flags: { out: string; computeBatch?: "auto" | number; maxMemory?: number } & PoolOptions) => {
      const handle = generatorHandle(command);
      const settings = settingsFromFlags(command);
      requireSetting(command, settings, "models");
      const steer = await steering(command);
      if (steer) settings.steer = steer;
      if (settings.steer) requireLocal(handle, "steering");
      endpointFlags(command, settings, ["judge"]);
      if (!settings.jailbreaks && !settings.benign && !settings.benchmarks)
        Object.assign(settings, ORGANISM_SETS);
      const results = await evaluate(parseEvalSettings(settings), {
        out: flags.out,
        computeBatch: flags.computeBatch,
        maxMemory: flags.maxMemory,
        engine: handle,
        pool: { workers: flags.workers, devices: flags.devices },
      });
      console.log(formatResults(results));
      console.log(`results → ${flags.out}`);
    },
  );
}
