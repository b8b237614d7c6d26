// steermoe inspect: flags → InspectSettings; the model's MoE layout, as text or JSON.
import type { Command } from "commander";
import { z } from "zod";
import { ModelInfo } from "../components/domain.js";
import { parseSettings } from "../components/config.js";
import { formatModelInfo, inspect, InspectSettings } from "../recipes/inspect.js";
import { modelOptions, requireSetting, settingsFromFlags, verbose } from "./flags.js";

export function inspectCommand(cli: Command): void {
  const command = cli.command("inspect").description("describe a model's MoE layout and parameter counts");
  modelOptions(command, "model", "--model").option("--json", "print JSON");
  command.action(async (flags: { json?: boolean }) => {
    const settings = settingsFromFlags(command);
    requireSetting(command, settings, "model.source");
    const { model, engine } = await inspect(parseSettings(InspectSettings, settings, "inspect"), {
      engine: { verbose: verbose(command) },
    });
    if (flags.json) console.log(JSON.stringify({ ...z.encode(ModelInfo, model), engine }, null, 2));
    else console.log(formatModelInfo(model));
  });
}
