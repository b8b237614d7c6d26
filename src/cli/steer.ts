// Test-time steering flags, shared by generate, eval and export-steering: --steer FILE, or
// --steer-from RUN with --top, --steer-mode and --steer-scale.
import { Option, type Command } from "commander";
import { UserError } from "../components/errors.js";
import { readSteerFile, SteerFrom, steerFromRun, type Steering } from "../components/method/steering.js";
import { fromSchema } from "./flags.js";

/** --top, --steer-mode, --steer-scale: which experts of a run, and how hard. */
export function steerFromOptions(command: Command, flag = "--steer-from"): Command {
  return command
    .addOption(
      fromSchema(
        new Option(
          "--top <n|ci>",
          `with ${flag}: how many experts, or ci (every one whose 95% CI excludes 0)`,
        ),
        SteerFrom,
        "top",
      ),
    )
    .addOption(
      fromSchema(
        new Option("--steer-mode <mode>", `with ${flag}: steer them away or toward`),
        SteerFrom,
        "mode",
      ),
    )
    .addOption(
      fromSchema(
        new Option(
          "--steer-scale <s>",
          `with ${flag}: bias = ∓s × mean risk difference (none: fully off/on)`,
        ),
        SteerFrom,
        "scale",
      ),
    );
}

export function steerOptions(command: Command, what: string): Command {
  command
    .option("--steer <file>", `${what}: a bias map (.npy [layers, experts], or JSON; docs/steering.md)`)
    .option("--steer-from <run>", `${what}: the top experts of an analysis run`);
  return steerFromOptions(command);
}

/** The run's steering map as --top, --steer-mode and --steer-scale ask. */
export function steerFromFlags(command: Command, run: string): Promise<Steering> {
  const f = command.opts<{ top: number | "ci"; steerMode: "deactivate" | "activate"; steerScale?: number }>();
  return steerFromRun(run, { top: f.top, mode: f.steerMode, scale: f.steerScale });
}

/** The steering the flags ask for; undefined when none (the config file's, if any, stays). */
export async function steering(command: Command): Promise<Steering | undefined> {
  const f = command.opts<{ steer?: string; steerFrom?: string }>();
  if (f.steer && f.steerFrom) throw new UserError("give --steer or --steer-from, not both");
  // They only say which experts of a run: without one they would be ignored without a word.
  const given = ["top", "steerMode", "steerScale"].find((k) => command.getOptionValueSource(k) === "cli");
  if (given && !f.steerFrom)
    throw new UserError(`--${given.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} needs --steer-from`);
  if (f.steer) return readSteerFile(f.steer);
  if (f.steerFrom) return steerFromFlags(command, f.steerFrom);
  return undefined;
}
