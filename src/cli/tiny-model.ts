// steermoe tiny-model: a tiny random MoE model folder, for tests and examples.
import { Option, type Command } from "commander";
import { z } from "zod";
import { UserError } from "../components/errors.js";
import { DENSE_TEST_ARCH, tinyModel } from "../recipes/tiny-model.js";
import { fromSchema, seedOption, verbose } from "./flags.js";

const Count = z.number().int().min(1).optional();

export function tinyModelCommand(cli: Command): void {
  const command = cli
    .command("tiny-model")
    .description("build a tiny random MoE model folder (for tests and examples; no network)")
    .addOption(
      // The engine knows which model types it can build; it names them when given another.
      new Option(
        "--arch <arch>",
        "model type: any of the support table (README, docs/support.md), e.g. deepseek_v3",
      ).default("olmoe"),
    )
    .requiredOption("--out <dir>", "model folder to create")
    .addOption(seedOption());
  for (const [flags, help] of [
    ["--layers <n>", "decoder layers"],
    ["--experts <n>", "experts per MoE layer"],
    ["--top-k <n>", "experts per token"],
    ["--hidden <n>", "hidden size"],
  ] as const) {
    command.addOption(fromSchema(new Option(flags, help), Count, ""));
  }
  command.option(
    "--released",
    "the routing of the released checkpoint of this model type (experts, top-k, groups, scaling; docs/support.md names it), tiny widths",
  );
  command.action(
    async (flags: {
      arch: string;
      out: string;
      seed: number;
      layers?: number;
      experts?: number;
      topK?: number;
      hidden?: number;
      released?: boolean;
    }) => {
      if (flags.arch === DENSE_TEST_ARCH)
        throw new UserError(
          `--arch ${DENSE_TEST_ARCH}: a dense model (no experts), which steermoe cannot analyse; choose an MoE type of docs/support.md, e.g. olmoe or llama4_text`,
        );
      const result = await tinyModel(
        {
          arch: flags.arch,
          out: flags.out,
          seed: flags.seed,
          size: { layers: flags.layers, experts: flags.experts, topK: flags.topK, hidden: flags.hidden },
          released: flags.released,
        },
        { engine: { verbose: verbose(command) } },
      );
      const routing = result.mirrors ? ` and ${result.mirrors}'s routing` : "";
      console.log(`built ${flags.arch} with ${result.parameters} parameters${routing} → ${result.path}`);
    },
  );
}
