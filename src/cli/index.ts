// The command line: one module per command turns flags into a recipe's settings; here they are
// put together, and every failure becomes one line.
import { readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { z } from "zod";
import { EngineDiedError, EngineError } from "../components/engine/client.js";
import { diskFault, UserError, zodProblem } from "../components/errors.js";
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

/** The engine's traceback or last output, kept in a file so the error itself stays one line. */
function engineLog(text: string): string {
  const path = join(
    tmpdir(),
    `steermoe-engine-${new Date().toISOString().replace(/[:.]/g, "-")}-${process.pid}.log`,
  );
  writeFileSync(path, text.endsWith("\n") ? text : `${text}\n`);
  return path;
}

export async function main(argv: string[]): Promise<void> {
  const cli = program();
  try {
    await cli.parseAsync(argv);
  } catch (err) {
    const verbose = Boolean(cli.opts().verbose);
    // One line, whatever a quoted excerpt (a JSON parser's, a file's) carries, and no credential.
    const line = (message: string) => hideUrlCredentials(message.replace(/\s*\n\s*/g, " "));
    if (err instanceof UserError) {
      console.error(`steermoe: ${line(err.message)}`);
    } else if (err instanceof EngineError && err.type === "EngineError") {
      // The engine's own errors are about the request's inputs and name them.
      console.error(`steermoe: ${line(err.message)}`);
    } else if (err instanceof EngineError) {
      const log = engineLog(err.traceback ?? err.message);
      console.error(
        `steermoe: internal error in the engine (${err.type}: ${err.message.split("\n")[0]}; log: ${log})`,
      );
      if (verbose) console.error(readFileSync(log, "utf8"));
    } else if (err instanceof EngineDiedError) {
      // Killed or crashed: why is in its last output, kept in the log.
      const log = engineLog(`${err.message}\n${err.output}`);
      console.error(`steermoe: ${line(err.message)} (log: ${log})`);
      if (verbose) console.error(err.output);
    } else if (diskFault(err)) {
      console.error(`steermoe: ${line(diskFault(err)!)}`);
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
