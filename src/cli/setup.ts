// steermoe setup: the engine's Python environment for an installed package, in the user's cache.
import type { Command } from "commander";
import { environmentDir, setupEnvironment } from "../components/engine/environment.js";

export function setupCommand(cli: Command): void {
  cli
    .command("setup")
    .description(
      "create the engine's Python environment (pinned packages and `import steermoe`) in the user cache directory",
    )
    .option(
      "--python <path>",
      "the Python >= 3.10 to create it with (default $STEERMOE_SETUP_PYTHON or python3)",
    )
    .action((flags: { python?: string }) => {
      const result = setupEnvironment({
        python: flags.python ?? (process.env.STEERMOE_SETUP_PYTHON || "python3"),
        log: (line) => console.error(`setup: ${line}`),
      });
      console.log(`${result.created ? "ready" : "already set up"}: ${environmentDir()}`);
      console.log(`python: ${result.python}`);
    });
}
