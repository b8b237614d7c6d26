// steermoe export-steering: flags → ExportSteeringSettings.
import { Option, type Command } from "commander";
import { exportSteering, ExportSteeringSettings } from "../recipes/export-steering.js";
import { fromSchema } from "./flags.js";
import { steerFromOptions } from "./steer.js";

export function exportSteeringCommand(cli: Command): void {
  const command = cli
    .command("export-steering")
    .description("write a run's steering map (layer, expert, bias) as JSON or .npy for other runtimes")
    .requiredOption("--run <dir>", "analysis run folder")
    .addOption(fromSchema(new Option("--format <format>", "file format"), ExportSteeringSettings, "format"))
    .requiredOption("--out <file>", "file to write (npy: also FILE.json, naming the model and indexing)");
  steerFromOptions(command, "--run").action(
    async (flags: {
      run: string;
      out: string;
      format: "json" | "npy";
      top: number | "ci";
      steerMode: "deactivate" | "activate";
      steerScale?: number;
    }) => {
      const { files, experts } = await exportSteering({
        run: flags.run,
        out: flags.out,
        format: flags.format,
        top: flags.top,
        mode: flags.steerMode,
        scale: flags.steerScale,
      });
      console.log(`${experts} experts → ${files.join(", ")}`);
    },
  );
}
