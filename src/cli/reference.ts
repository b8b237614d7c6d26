// docs/commands.md: every command's --help, made from the same commander definitions and settings
// schemas the CLI runs on (`npm run schemas` writes it; a test keeps the file equal to this).
import { program } from "./index.js";

/** Wide enough for a flag and its help on one line more often than not, and fixed, unlike a terminal. */
const WIDTH = 100;

export function commandReference(): string {
  const cli = program();
  const lines = [
    "# Commands",
    "",
    "<!-- Written by `npm run schemas` from the CLI's own definitions (src/cli/); do not edit. -->",
    "",
    "Every command's `--help`. Settings can also come from a `--config` file (JSON or YAML, its",
    "JSON Schema in `schemas/<command>.schema.json`) and `--set key.path=value`; flags given win.",
    "",
  ];
  for (const command of cli.commands) {
    command.configureHelp({ helpWidth: WIDTH });
    lines.push(`## ${command.name()}`, "", "```", command.helpInformation().trimEnd(), "```", "");
  }
  return lines.join("\n");
}
