// The command line: one module per command turns flags into a recipe's settings; here they are
// put together, and every failure becomes one line.
import { Command } from "commander";
import { z } from "zod";
import { EngineDiedError, EngineError } from "../components/engine/client.js";
import { UserError, zodProblem } from "../components/errors.js";
import { hideUrlCredentials } from "../components/io/secrets.js";
import { analyzeCommand } from "./analyze.js";
import { applyDeltaCommand } from "./apply-delta.js";
import { buildOrganismCommand } from "./build-organism.js";
import { demoCommand } from "./demo.js";
import { evalCommand } from "./eval.js";
import { exportSteeringCommand } from "./export-steering.js";
import { generateCommand } from "./generate.js";
import { inspectCommand } from "./inspect.js";
import { jailbreakCommand } from "./jailbreak.js";
import { reportCommand } from "./report.js";
import { serveCommand } from "./serve.js";
import { setupCommand } from "./setup.js";
import { syntheticDataCommand } from "./synthetic-data.js";
import { tinyModelCommand } from "./tiny-model.js";
import { trainCommand } from "./train.js";

export function program(): Command {
  const cli = new Command("steermoe")
    .description("Find and repair the experts that carry unsafe behaviour in Mixture-of-Experts models")
    .option("--verbose", "show the engine's log and stack traces")
    // Commander's own errors (unknown flag, bad value) become one line like ours; a bad value is
    // quoted, and a URL's credentials are not.
    .configureOutput({
      outputError: (text, write) =>
        write(
          `steermoe: ${hideUrlCredentials(text)
            .replace(/^error: /, "")
            .trim()
            .replace(/\s*\n\s*/g, " ")} (see --help)\n`,
        ),
    });
  for (const add of [
    setupCommand,
    inspectCommand,
    generateCommand,
    analyzeCommand,
    trainCommand,
    applyDeltaCommand,
    evalCommand,
    jailbreakCommand,
    exportSteeringCommand,
    buildOrganismCommand,
    reportCommand,
    serveCommand,
    syntheticDataCommand,
    tinyModelCommand,
    demoCommand,
  ]) {
    add(cli);
  }
  return cli;
}

export async function main(argv: string[]): Promise<void> {
  const cli = program();
  try {
    await cli.parseAsync(argv);
  } catch (err) {
    const verbose = Boolean(cli.opts().verbose);
    if (err instanceof UserError || err instanceof EngineDiedError) {
      console.error(`steermoe: ${hideUrlCredentials(err.message)}`);
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
