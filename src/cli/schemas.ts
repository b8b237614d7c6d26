// The JSON Schema of each recipe's settings, shipped as schemas/<recipe>.schema.json so that
// editors complete and check --config files. Written by `npm run schemas`; a test keeps the
// committed files equal to what the zod schemas generate. The run files' schemas go into the Python
// package (engine/steermoe/schemas/), whose load_run validates every file against them; the
// routing shard format goes to the engine (engine/steermoe_engine/routing_format.json).
import { z } from "zod";
import { AnalyzeSettings } from "../recipes/analyze.js";
import { ApplyDeltaSettings } from "../recipes/apply-delta.js";
import { EvalSettings } from "../recipes/evaluate.js";
import { GenerateConfig } from "../recipes/generate.js";
import { InspectSettings } from "../recipes/inspect.js";
import { JailbreakSettings } from "../recipes/jailbreak.js";
import { ServeSettings } from "../recipes/serve.js";
import { TrainSettings } from "../recipes/train.js";
import { AnalyzedSampleRow, EvalResults, ExpertsFile, TrainLogRow } from "../components/io/run-files.js";
import { SHARD_FORMAT, ShardMetadata } from "../components/io/routing.js";

export const RECIPE_SETTINGS = {
  analyze: AnalyzeSettings,
  train: TrainSettings,
  eval: EvalSettings,
  generate: GenerateConfig,
  inspect: InspectSettings,
  "apply-delta": ApplyDeltaSettings,
  jailbreak: JailbreakSettings,
  serve: ServeSettings,
} as const;

/** File name → text. A config file may leave any top-level setting to the flags, so none is required there. */
export function settingsJsonSchemas(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(RECIPE_SETTINGS).map(([name, schema]) => {
      const { $schema, ...json } = z.toJSONSchema(schema.partial(), { io: "input" });
      const titled = { $schema, title: `steermoe ${name} settings (a --config file)`, ...json };
      return [`${name}.schema.json`, JSON.stringify(titled, null, 2) + "\n"];
    }),
  );
}

/** The run files the Python package's load_run reads, by the name its validator looks them up by. */
export const RUN_FILES = {
  samples: AnalyzedSampleRow,
  experts: ExpertsFile,
  train_log: TrainLogRow,
  eval_results: EvalResults,
} as const;

/** File name → text: each run file's schema as the CLI writes it. */
export function runFileJsonSchemas(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(RUN_FILES).map(([name, schema]) => [
      `${name}.schema.json`,
      JSON.stringify(z.toJSONSchema(schema, { io: "output" }), null, 2) + "\n",
    ]),
  );
}

/** File name → text: the routing shard format, for the engine, which writes shards by it. */
export function routingFormatJson(): Record<string, string> {
  const metadata = z.toJSONSchema(ShardMetadata, { io: "output" });
  return { "routing_format.json": JSON.stringify({ ...SHARD_FORMAT, metadata }, null, 2) + "\n" };
}
