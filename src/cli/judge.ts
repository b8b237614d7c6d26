// The refusal judge's flags, shared by analyze and eval. The endpoint flags describe one
// OpenAI-compatible endpoint: the judge's with --judge openai, and in analyze also the one that
// writes refusal targets with --refusal-source openai.
import { Option, type Command } from "commander";
import type { z } from "zod";
import { OpenAIEndpoint } from "../components/judge/judge.js";
import { overlay } from "../components/io/run.js";
import { UserError } from "../components/errors.js";
import { fromSchema, setting } from "./flags.js";

const ENDPOINT_FLAGS = [
  ["--judge-url <url>", "baseUrl", "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1"],
  ["--judge-model <name>", "model", "model name at the endpoint"],
  ["--judge-key-env <name>", "apiKeyEnv", "environment variable holding the API key"],
] as const;

export function judgeOptions(command: Command, schema: z.core.$ZodType): Command {
  command.addOption(setting(schema, "judge.kind", "--judge <kind>", "refusal judge"));
  for (const [flags, key, help] of ENDPOINT_FLAGS) {
    command.addOption(fromSchema(new Option(flags, help), OpenAIEndpoint, key));
  }
  return command;
}

/**
 * Lays the endpoint flags given over each of `paths` in `settings` that asks for an endpoint:
 * `judge` with kind openai, `refusal` (its `endpoint`) with source openai.
 */
export function endpointFlags(command: Command, settings: Record<string, unknown>, paths: string[]): void {
  const given = ENDPOINT_FLAGS.filter(([, key]) => command.getOptionValueSource(attribute(key)) === "cli");
  if (given.length === 0) return;
  const endpoint = Object.fromEntries(given.map(([, key]) => [key, command.getOptionValue(attribute(key))]));
  let used = false;
  for (const path of paths) {
    const target = settings[path] as Record<string, unknown> | undefined;
    if (path === "judge" && target?.kind === "openai") {
      settings.judge = overlay(target, endpoint);
      used = true;
    }
    if (path === "refusal" && target?.source === "openai") {
      target.endpoint = overlay((target.endpoint ?? {}) as Record<string, unknown>, endpoint);
      used = true;
    }
  }
  if (!used) {
    const users = paths.map((p) => (p === "judge" ? "--judge openai" : "--refusal-source openai"));
    throw new UserError(`${given[0]![0].split(" ")[0]} needs ${users.join(" or ")}`);
  }
}

const attribute = (key: (typeof ENDPOINT_FLAGS)[number][1]) =>
  ({ baseUrl: "judgeUrl", model: "judgeModel", apiKeyEnv: "judgeKeyEnv" })[key];
