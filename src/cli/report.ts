// steermoe report: one self-contained report.html for a run folder.
import type { Command } from "commander";
import { report } from "../recipes/report.js";

export function reportCommand(cli: Command): void {
  cli
    .command("report")
    .description("write one self-contained report.html for a run (works on unfinished runs too)")
    .requiredOption("--run <dir>", "run folder")
    .option("--out <file>", "where to write the page (default RUN/report.html)")
    .option(
      "--eval <dir>",
      "the evaluation to show: an eval --out folder (default RUN/eval or RUN/train/eval)",
    )
    .action(async (flags: { run: string; out?: string; eval?: string }) => {
      const result = await report({ run: flags.run, out: flags.out, eval: flags.eval });
      if (result.missing.length) console.log(`not in the run yet: ${result.missing.join(", ")}`);
      console.log(`report → ${result.path}`);
    });
}
