// steermoe demo: analyze → train → eval → report on the model organism (organism/demo.json).
import type { Command } from "commander";
import { formatResults } from "../recipes/evaluate.js";
import { demo } from "../recipes/demo.js";
import { interruptible, verbose } from "./flags.js";

export function demoCommand(cli: Command): void {
  const command = cli
    .command("demo")
    .description(
      "the whole method on the model organism: analyze → train the unsafe experts → eval before/after",
    )
    .option("--out <dir>", "run folder", "runs/demo")
    .option("--overwrite", "replace an existing run folder")
    .action(async (flags: { out: string; overwrite?: boolean }) => {
      const result = await demo(
        { out: flags.out, overwrite: flags.overwrite ?? false },
        { engine: { verbose: verbose(command) }, signal: interruptible() },
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
}
