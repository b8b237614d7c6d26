// steermoe analyze: flags → AnalyzeSettings.
import type { Command } from "commander";
import { analyze, AnalyzeSettings, parseAnalyzeSettings, type AnalyzeSummary } from "../recipes/analyze.js";
import type { PoolOptions } from "../components/engine/pool.js";
import { endpointFlags, judgeOptions } from "./judge.js";
import {
  computeBatchOption,
  encodingOption,
  maxMemoryOption,
  interruptible,
  modelOptions,
  poolOptions,
  requireSetting,
  samplingOptions,
  settingOptions,
  settingsFromFlags,
  generatorHandle,
  backendOptions,
} from "./flags.js";

export function analyzeCommand(cli: Command): void {
  const command = cli
    .command("analyze")
    .description("find the experts that fire more under jailbreak (mixed batches, QC, risk difference)")
    .requiredOption("--run <dir>", "run folder (resumed if it exists with the same settings)");
  settingOptions(command, AnalyzeSettings, [
    ["--data <file>", "data.file", "jailbreak dataset: JSON array or JSONL"],
    ["--preset <name>", "data.preset", "dataset format"],
    ["--keep-filtered", "data.keepFiltered", "keep records the preset drops (flipattack: failed jailbreaks)"],
    ["--skip-long", "data.skipLong", "leave out pairs over the length limit (listed in batches.json)"],
  ]);
  command.addOption(encodingOption(AnalyzeSettings, "data.encoding"));
  modelOptions(command, "model", "--model");
  settingOptions(command, AnalyzeSettings, [
    ["--batch-size <n>", "batch.size", "samples per analysis batch"],
    ["--safe-ratio <r>", "batch.safeRatio", "share of safe samples per batch"],
    ["--shuffle-seed <n>", "batch.shuffleSeed", "shuffle pairs before batching (default: dataset order)"],
  ]);
  samplingOptions(command, AnalyzeSettings);
  command.addOption(computeBatchOption()).addOption(maxMemoryOption());
  poolOptions(command);
  backendOptions(command);
  settingOptions(command, AnalyzeSettings, [
    ["--qc <on|off>", "qc", "keep only pairs whose plain request was refused and jailbreak not"],
  ]);
  judgeOptions(command, AnalyzeSettings);
  settingOptions(command, AnalyzeSettings, [
    ["--tokens <part>", "tokens", "tokens the risk difference counts"],
    ["--batch-threshold <x>", "selection.batchThreshold", "per-batch selection: risk_diff above this"],
    ["--batch-top-k <n>", "selection.batchTopK", "per-batch selection: at most this many experts"],
    ["--global-threshold <x>", "selection.globalThreshold", "global selection: mean risk_diff above this"],
    ["--global-top-k <n>", "selection.globalTopK", "global selection: at most this many experts"],
    [
      "--random-experts",
      "selection.randomExperts",
      "ablation: also draw each batch's experts at random, as many as its real set (seed + batch_idx)",
    ],
    [
      "--refusal-source <source>",
      "refusal.source",
      "SFT target for jailbreaks (openai: from the --judge-url endpoint)",
    ],
    ["--refusal-template <text>", "refusal.template", "the sentence used by --refusal-source template"],
  ]);
  command.action(
    async (flags: { run: string; computeBatch?: "auto" | number; maxMemory?: number } & PoolOptions) => {
      const handle = generatorHandle(command);
      const settings = settingsFromFlags(command);
      requireSetting(command, settings, "model.source");
      requireSetting(command, settings, "data.file");
      endpointFlags(command, settings, ["judge", "refusal"]);
      const summary = await analyze(parseAnalyzeSettings(settings), {
        run: flags.run,
        computeBatch: flags.computeBatch,
        maxMemory: flags.maxMemory,
        engine: handle,
        pool: { workers: flags.workers, devices: flags.devices },
        signal: interruptible(),
      });
      console.log(formatAnalyzeSummary(summary));
      if (!summary.complete) process.exitCode = 130;
    },
  );
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
  if (s.skippedLong) {
    lines.splice(
      1,
      0,
      `${s.skippedLong} pairs over the length limit left out (--skip-long; listed in batches.json)`,
    );
  }
  const top = s.globalExperts!.slice(0, 10);
  if (top.length) lines.push("top experts: " + top.map((e) => `${e.label} ${e.score.toFixed(3)}`).join(", "));
  lines.push(`run folder: ${s.run}`);
  return lines.join("\n");
}
