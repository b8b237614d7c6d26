// The command line: parses flags into the recipes' configs and turns failures into one line.
import { Command, InvalidArgumentError, Option } from "commander";
import { EngineDiedError, EngineError } from "./components/engine.js";
import { UserError, zodProblem } from "./components/errors.js";
import { z } from "zod";
import { demo } from "./recipes/demo.js";
import { generate } from "./recipes/generate.js";
import { formatModelInfo, inspect } from "./recipes/inspect.js";
import { tinyModel } from "./recipes/tiny-model.js";

const int = (min: number) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected a whole number >= ${min}`);
  return n;
};
const num = (value: string) => {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError("expected a number");
  return n;
};
const batch = (value: string) => (value === "auto" ? "auto" : int(1)(value));

interface ModelFlags {
  model: string;
  dtype: "auto" | "bf16" | "fp16" | "fp32";
  device: string;
  trustRemoteCode?: boolean;
  verbose?: boolean;
}

function modelOptions(command: Command): Command {
  return command
    .requiredOption("--model <path|hub-id>", "model folder (config.json, safetensors, tokenizer) or hub id")
    .addOption(
      new Option("--dtype <dtype>", "weights dtype")
        .choices(["auto", "bf16", "fp16", "fp32"])
        .default("auto"),
    )
    .option("--device <device>", "auto, cpu, cuda or cuda:N", "auto")
    .option("--trust-remote-code", "run code shipped with the model (off unless asked)");
}

const modelConfig = (flags: ModelFlags) => ({
  source: flags.model,
  dtype: flags.dtype,
  device: flags.device,
  trustRemoteCode: flags.trustRemoteCode ?? false,
});

/** First Ctrl-C asks the running job to stop after the batch in hand; a second one stops now. */
function interruptible(): AbortSignal {
  const controller = new AbortController();
  process.on("SIGINT", () => {
    if (controller.signal.aborted) {
      process.stderr.write("\nsteermoe: stopped\n");
      process.exit(130);
    }
    process.stderr.write("\nsteermoe: stopping after the current batch (Ctrl-C again to stop now)\n");
    controller.abort();
  });
  return controller.signal;
}

export function program(): Command {
  const cli = new Command("steermoe")
    .description("Find and repair the experts that carry unsafe behaviour in Mixture-of-Experts models")
    .option("--verbose", "show the engine's log and stack traces")
    .showHelpAfterError("(run with --help for usage)")
    .configureOutput({ outputError: (text, write) => write(`steermoe: ${text.replace(/^error: /, "")}`) });

  modelOptions(cli.command("inspect").description("describe a model's MoE layout and parameter counts"))
    .option("--json", "print JSON")
    .action(async (flags: ModelFlags & { json?: boolean }) => {
      const { model, engine } = await inspect(modelConfig(flags), { verbose: cli.opts().verbose });
      if (flags.json) console.log(JSON.stringify({ ...model, engine }, null, 2));
      else console.log(formatModelInfo(model));
    });

  modelOptions(
    cli.command("generate").description("generate for chat conversations, recording every token's experts"),
  )
    .requiredOption("--input <file>", "conversations: JSON array or JSONL of {id?, messages}")
    .requiredOption("--out <dir>", "output folder")
    .option("--max-new-tokens <n>", "tokens to generate per sample", int(1), 128)
    .option("--temperature <t>", "sampling temperature (0 = greedy)", num, 1.0)
    .option("--top-p <p>", "nucleus sampling mass", num, 1.0)
    .option("--seed <n>", "sample i is drawn with seed + i", int(0), 42)
    .option("--batch-size <n|auto>", "sequences run at once (auto: 16 on CPU, 64 on GPU)", batch, "auto")
    .option("--replay", "conversations end with the response: record its routing, do not generate")
    .option("--overwrite", "replace an existing output folder")
    .action(
      async (
        flags: ModelFlags & {
          input: string;
          out: string;
          maxNewTokens: number;
          temperature: number;
          topP: number;
          seed: number;
          batchSize: "auto" | number;
          replay?: boolean;
          overwrite?: boolean;
        },
      ) => {
        const summary = await generate(
          {
            model: modelConfig(flags),
            input: flags.input,
            out: flags.out,
            sampling: {
              maxNewTokens: flags.maxNewTokens,
              temperature: flags.temperature,
              topP: flags.topP,
              seed: flags.seed,
            },
            batchSize: flags.batchSize,
            replay: flags.replay ?? false,
            overwrite: flags.overwrite ?? false,
          },
          { engine: { verbose: cli.opts().verbose }, signal: interruptible() },
        );
        const state = summary.complete ? "done" : "stopped early";
        console.log(
          `${state}: ${summary.samples}/${summary.total} samples, ${summary.generatedTokens} response tokens ` +
            `in ${summary.seconds.toFixed(1)} s → ${summary.out}`,
        );
        if (!summary.complete) process.exitCode = 130;
      },
    );

  cli
    .command("tiny-model")
    .description("build a tiny random MoE model folder (for tests and examples; no network)")
    .addOption(
      new Option("--arch <arch>", "architecture")
        .choices(["olmoe", "mixtral", "qwen2_moe", "qwen3_moe", "llama"])
        .default("olmoe"),
    )
    .requiredOption("--out <dir>", "model folder to create")
    .option("--seed <n>", "random seed", int(0), 0)
    .option("--layers <n>", "decoder layers", int(1))
    .option("--experts <n>", "experts per MoE layer", int(2))
    .option("--top-k <n>", "experts per token", int(1))
    .option("--hidden <n>", "hidden size", int(8))
    .action(
      async (flags: {
        arch: string;
        out: string;
        seed: number;
        layers?: number;
        experts?: number;
        topK?: number;
        hidden?: number;
      }) => {
        const result = await tinyModel(
          {
            arch: flags.arch,
            out: flags.out,
            seed: flags.seed,
            size: { layers: flags.layers, experts: flags.experts, top_k: flags.topK, hidden: flags.hidden },
          },
          { verbose: cli.opts().verbose },
        );
        console.log(`built ${flags.arch} with ${result.parameters} parameters → ${result.path}`);
      },
    );

  cli
    .command("demo")
    .description(
      "the built-in default job: a tiny OLMoE model, inspected, then generating with routing recorded",
    )
    .option("--out <dir>", "run folder", "runs/demo")
    .option("--overwrite", "replace an existing run folder")
    .action(async (flags: { out: string; overwrite?: boolean }) => {
      await demo(
        { out: flags.out, overwrite: flags.overwrite ?? false },
        { verbose: cli.opts().verbose },
        interruptible(),
      );
    });

  return cli;
}

export async function main(argv: string[]): Promise<void> {
  const cli = program();
  try {
    await cli.parseAsync(argv);
  } catch (err) {
    const verbose = Boolean(cli.opts().verbose);
    if (err instanceof UserError || err instanceof EngineDiedError) {
      console.error(`steermoe: ${err.message}`);
    } else if (err instanceof EngineError) {
      console.error(
        `steermoe: ${err.type === "EngineError" ? "" : `engine ${err.type}: `}${err.message.split("\n")[0]}`,
      );
      if (verbose && err.traceback) console.error(err.traceback);
    } else if (err instanceof z.ZodError) {
      console.error(`steermoe: ${zodProblem(err)}`);
      if (verbose) console.error(err.stack);
    } else {
      console.error(`steermoe: internal error: ${(err as Error).message}`);
      if (verbose) console.error((err as Error).stack);
      else console.error("(run with --verbose for the stack trace)");
    }
    process.exitCode = 1;
  }
}
