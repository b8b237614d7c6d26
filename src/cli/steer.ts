// Test-time steering flags, shared by generate and eval: --steer FILE or --steer-from RUN.
import { Option, type Command } from "commander";
import { z } from "zod";
import { UserError } from "../components/errors.js";
import { readSteerFile, steerFromRun, type Steering } from "../components/method/steering.js";
import { fromSchema } from "./flags.js";

const SteerFrom = z.strictObject({
  top: z.number().int().min(1).default(10),
  mode: z.enum(["deactivate", "activate"]).default("deactivate"),
});

export function steerOptions(command: Command, what: string): Command {
  return command
    .option("--steer <file>", `${what}: {deactivate: [{layer, expert}], activate: [...]}`)
    .option("--steer-from <run>", `${what}: the top experts of an analysis run (--top, --steer-mode)`)
    .addOption(fromSchema(new Option("--top <n>", "with --steer-from: how many experts"), SteerFrom, "top"))
    .addOption(
      fromSchema(
        new Option("--steer-mode <mode>", "with --steer-from: switch them off or on"),
        SteerFrom,
        "mode",
      ),
    );
}

/** The steering the flags ask for; undefined when none (the config file's, if any, stays). */
export function steering(command: Command): Steering | undefined {
  const f = command.opts<{ steer?: string; steerFrom?: string } & z.infer<typeof SteerFrom>>();
  if (f.steer && f.steerFrom) throw new UserError("give --steer or --steer-from, not both");
  if (f.steer) return readSteerFile(f.steer);
  if (f.steerFrom) return steerFromRun(f.steerFrom, f.top, f.mode);
  return undefined;
}
