// steermoe synthetic-data: the seeded synthetic FlipAttack-style dataset.
import type { Command } from "commander";
import { writeSyntheticData } from "../components/data/synthetic.js";
import { seedOption } from "./flags.js";

export function syntheticDataCommand(cli: Command): void {
  cli
    .command("synthetic-data")
    .description("write the seeded synthetic FlipAttack-style dataset (train, held-out, benign)")
    .requiredOption("--out <dir>", "folder for train.json, heldout.json, benign.json, manifest.json")
    .addOption(seedOption())
    .action((flags: { out: string; seed: number }) => {
      const manifest = writeSyntheticData(flags.out, flags.seed);
      console.log(`wrote ${JSON.stringify(manifest.counts)} → ${flags.out}`);
    });
}
