// steermoe build-organism: the model organism and its data, rebuilt from the seed.
import type { Command } from "commander";
import { buildOrganism } from "../recipes/organism.js";
import { verbose } from "./flags.js";

export function buildOrganismCommand(cli: Command): void {
  const command = cli
    .command("build-organism")
    .description("rebuild the model organism and its synthetic data from the seed (minutes on a CPU)")
    .option("--out <dir>", "folder for data/, model/ and manifest.json", "organism")
    .action(async (flags: { out: string }) => {
      const model = await buildOrganism({ out: flags.out }, { engine: { verbose: verbose(command) } });
      console.log(`organism → ${model}`);
    });
}
