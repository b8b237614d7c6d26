// The judge's flags, shared by analyze and eval. The endpoint flags describe one
// OpenAI-compatible endpoint: the judge's with a judge that asks a model (--judge openai,
// strongreject, harmbench, llamaguard), and in analyze also the one that writes refusal targets
// with --refusal-source openai.
import { InvalidArgumentError, Option, type Command } from "commander";
import type { z } from "zod";
import {
  ENDPOINT_JUDGES,
  HarmBenchJudgeConfig,
  KeywordJudgeConfig,
  OpenAIEndpoint,
  StrongRejectJudgeConfig,
} from "../components/judge/judge.js";
import { overlay } from "../components/io/run.js";
import { UserError } from "../components/errors.js";
import { fromSchema, setting } from "./flags.js";

const ENDPOINT_FLAGS = [
  [
    "--judge-url <url>",
    "baseUrl",
    "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (stored without user:password and query)",
  ],
  ["--judge-model <name>", "model", "model name at the endpoint"],
  ["--judge-key-env <name>", "apiKeyEnv", "environment variable holding the API key"],
  ["--judge-timeout <seconds>", "timeoutMs", "seconds each request to the endpoint may take before a retry"],
] as const;

/** --judge-timeout is given in seconds; the setting holds milliseconds. */
function inSeconds(option: Option): Option {
  return option
    .argParser((raw: string) => {
      const seconds = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(seconds) || seconds <= 0)
        throw new InvalidArgumentError("expected a number of seconds > 0");
      return Math.max(1, Math.round(seconds * 1000));
    })
    .default(option.defaultValue, `${Number(option.defaultValue) / 1000}`);
}

/** Judges that take a prompt template of the user's. */
const TEMPLATE_JUDGES = ["strongreject", "harmbench", "llamaguard"];

export function judgeOptions(command: Command, schema: z.core.$ZodType): Command {
  command.addOption(
    setting(schema, "judge.kind", "--judge <kind>", "judge of each response (docs/judges.md)"),
  );
  command.addOption(
    setting(
      KeywordJudgeConfig,
      "keywords",
      "--keywords <list>",
      "refusal phrases of --judge keyword: steermoe's, or the AdvBench prefixes of GCG/HarmBench",
      "judge.keywords",
    ),
  );
  command.addOption(
    setting(
      StrongRejectJudgeConfig,
      "template",
      "--judge-template <file>",
      `your own prompt for --judge ${TEMPLATE_JUDGES.join("|")} (placeholders: docs/judges.md)`,
      "judge.template",
    ),
  );
  command.addOption(
    setting(
      HarmBenchJudgeConfig,
      "clipTokens",
      "--judge-clip-tokens <n>",
      "tokens of each response --judge harmbench sees, clipped as HarmBench does (512, its --num_tokens; 0: all)",
      "judge.clipTokens",
    ).default(undefined), // only harmbench has the setting: the default judge, keyword, has not
  );
  command.addOption(
    setting(
      HarmBenchJudgeConfig,
      "tokenizer",
      "--judge-tokenizer <source>",
      "tokenizer that clips for --judge harmbench: a folder or a hub id (default: --judge-model)",
      "judge.tokenizer",
    ),
  );
  for (const [flags, key, help] of ENDPOINT_FLAGS) {
    const option = fromSchema(new Option(flags, help), OpenAIEndpoint, key);
    command.addOption(key === "timeoutMs" ? inSeconds(option) : option);
  }
  return command;
}

/**
 * Checks that the judge flags given fit the judge chosen, and lays the endpoint flags given over
 * each of `paths` in `settings` that asks for an endpoint: `judge` with a judge that asks a
 * model, `refusal` (its `endpoint`) with source openai.
 */
export function endpointFlags(command: Command, settings: Record<string, unknown>, paths: string[]): void {
  const judge = settings.judge as Record<string, unknown> | undefined;
  // --keywords alone sets judge.keywords: the judge is the default one, keyword.
  if (judge && judge.kind === undefined) judge.kind = "keyword";
  const kind = judge?.kind ?? "keyword";
  const cli = (attribute: string) => command.getOptionValueSource(attribute) === "cli";
  if (cli("keywords") && kind !== "keyword") throw new UserError("--keywords needs --judge keyword");
  if (cli("judgeTemplate") && !TEMPLATE_JUDGES.includes(String(kind))) {
    throw new UserError(`--judge-template needs --judge ${TEMPLATE_JUDGES.join(", ")}`);
  }
  for (const flag of ["judgeClipTokens", "judgeTokenizer"]) {
    if (cli(flag) && kind !== "harmbench")
      throw new UserError(
        `--${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} needs --judge harmbench`,
      );
  }
  const given = ENDPOINT_FLAGS.filter(([, key]) => cli(attribute(key)));
  if (given.length === 0) return;
  const endpoint = Object.fromEntries(given.map(([, key]) => [key, command.getOptionValue(attribute(key))]));
  let used = false;
  for (const path of paths) {
    const target = settings[path] as Record<string, unknown> | undefined;
    if (path === "judge" && (ENDPOINT_JUDGES as readonly unknown[]).includes(target?.kind)) {
      settings.judge = overlay(target!, endpoint);
      used = true;
    }
    if (path === "refusal" && target?.source === "openai") {
      target.endpoint = overlay((target.endpoint ?? {}) as Record<string, unknown>, endpoint);
      used = true;
    }
  }
  if (!used) {
    const users = paths.map((p) =>
      p === "judge" ? `--judge ${ENDPOINT_JUDGES.join("|")}` : "--refusal-source openai",
    );
    throw new UserError(`${given[0]![0].split(" ")[0]} needs ${users.join(" or ")}`);
  }
}

const attribute = (key: (typeof ENDPOINT_FLAGS)[number][1]) =>
  ({ baseUrl: "judgeUrl", model: "judgeModel", apiKeyEnv: "judgeKeyEnv", timeoutMs: "judgeTimeout" })[key];
