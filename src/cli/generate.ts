// steermoe generate: flags → GenerateConfig.
import type { Command } from "commander";
import type { PoolOptions } from "../components/engine/pool.js";
import { generate, GenerateConfig } from "../recipes/generate.js";
import { parseSettings } from "../components/config.js";
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
import { steering, steerOptions } from "./steer.js";
import { requireLocal } from "../components/servers/generator.js";

export function generateCommand(cli: Command): void {
  const command = cli
    .command("generate")
    .description("generate for chat conversations, recording every token's experts");
  modelOptions(command, "model", "--model");
  settingOptions(command, GenerateConfig, [
    ["--input <file>", "input", "conversations: JSON array or JSONL of {id?, messages}"],
    ["--out <dir>", "out", "output folder"],
  ]);
  command.addOption(encodingOption(GenerateConfig, "encoding"));
  samplingOptions(command, GenerateConfig);
  command.addOption(computeBatchOption("computeBatch")).addOption(maxMemoryOption("maxMemory"));
  poolOptions(command);
  backendOptions(command);
  settingOptions(command, GenerateConfig, [
    ["--skip-long", "skipLong", "leave out conversations over the length limit (listed in meta.json)"],
    ["--replay", "replay", "conversations end with the response: record its routing, do not generate"],
    ["--overwrite", "overwrite", "replace an existing output folder"],
  ]);
  steerOptions(command, "switch experts off or on while generating");
  command.action(async (flags: PoolOptions) => {
    const handle = generatorHandle(command);
    const settings = settingsFromFlags(command);
    for (const path of ["model.source", "input", "out"]) requireSetting(command, settings, path);
    const steer = await steering(command);
    if (steer) settings.steer = steer;
    if (settings.steer) requireLocal(handle, "steering");
    const summary = await generate(parseSettings(GenerateConfig, settings, "generate"), {
      engine: handle,
      pool: { workers: flags.workers, devices: flags.devices },
      signal: interruptible(),
    });
    const state = summary.complete ? "done" : "stopped early";
    const skipped = summary.skippedLong ? ` (${summary.skippedLong} over-long conversations left out)` : "";
    console.log(
      `${state}: ${summary.samples}/${summary.total} samples, ${summary.generatedTokens} response tokens ` +
        `in ${summary.seconds.toFixed(1)} s${skipped} → ${summary.out}`,
    );
    if (!summary.complete) process.exitCode = 130;
  });
}
