// --benchmark NAME[:split][=FILE][,key=value...] and --benchmark-dir DIR, for eval and jailbreak.
import { InvalidArgumentError, type Command } from "commander";
import { BenchmarkSpec } from "../components/data/benchmarks.js";
import { zodProblem } from "../components/errors.js";
import { SettingOption } from "./flags.js";

/** "harmbench:val=f.csv,copyright=true" → {name, split, file, copyright}; values read as JSON when they parse. */
export function parseBenchmark(text: string): BenchmarkSpec {
  const [head = "", ...options] = text.split(",");
  const [, name, split, file] = /^([^:=]+)(?::([^=]+))?(?:=(.+))?$/.exec(head) ?? [];
  if (!name) throw new InvalidArgumentError("expected NAME[:split][=FILE][,key=value...]");
  const spec: Record<string, unknown> = { name, ...(split && { split }), ...(file && { file }) };
  for (const option of options) {
    const at = option.indexOf("=");
    if (at <= 0) throw new InvalidArgumentError(`"${option}": expected key=value`);
    const value = option.slice(at + 1);
    spec[option.slice(0, at)] = value === "true" ? true : value === "false" ? false : value;
  }
  const parsed = BenchmarkSpec.safeParse(spec);
  if (!parsed.success) throw new InvalidArgumentError(zodProblem(parsed.error));
  return spec as BenchmarkSpec;
}

export function benchmarkOptions(command: Command, what: string): Command {
  return command
    .addOption(
      new SettingOption(
        "--benchmark <NAME[:split][=FILE]>",
        `${what} (repeatable): harmbench[:test|val], strongreject[:full|small], advbench, jailbreakbench[:harmful|benign], xstest[:all|safe|unsafe], or NAME=FILE,prompt=COLUMN[,category=COLUMN][,id=COLUMN][,kind=harmful|benign] for a file of your own; harmbench,copyright=true adds its copyright behaviours`,
        "benchmarks",
      ).argParser((text: string, list: BenchmarkSpec[] = []) => [...list, parseBenchmark(text)]),
    )
    .addOption(
      new SettingOption(
        "--benchmark-dir <dir>",
        "folder holding the official benchmark files under their published names (for --benchmark NAME without =FILE)",
        "benchmarkDir",
      ),
    );
}
