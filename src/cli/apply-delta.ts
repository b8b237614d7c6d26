// steermoe apply-delta: flags → ApplyDeltaSettings.
import type { Command } from "commander";
import { parseSettings } from "../components/config.js";
import { applyDelta, ApplyDeltaSettings } from "../recipes/apply-delta.js";
import { modelOptions, requireSetting, settingOptions, settingsFromFlags, verbose } from "./flags.js";

export function applyDeltaCommand(cli: Command): void {
  const command = cli
    .command("apply-delta")
    .description("rebuild a fine-tuned model from its base and an expert delta");
  modelOptions(command, "model", "--base");
  settingOptions(command, ApplyDeltaSettings, [
    ["--delta <file>", "delta", "expert_delta.safetensors written by train"],
    ["--out <dir>", "out", "model folder to write"],
  ]);
  command.action(async () => {
    const settings = settingsFromFlags(command);
    for (const path of ["model.source", "delta", "out"]) requireSetting(command, settings, path);
    const config = parseSettings(ApplyDeltaSettings, settings, "apply-delta");
    const experts = await applyDelta(config, { engine: { verbose: verbose(command) } });
    console.log(`applied ${experts} experts → ${config.out}`);
  });
}
