// The JSON Schema of each recipe's settings, shipped as schemas/<recipe>.schema.json so that
// editors complete and check --config files. Written by `npm run schemas`; a test keeps the
// committed files equal to what the zod schemas generate.
import { z } from "zod";
import { AnalyzeSettings } from "../recipes/analyze.js";
import { ApplyDeltaSettings } from "../recipes/apply-delta.js";
import { EvalSettings } from "../recipes/evaluate.js";
import { GenerateConfig } from "../recipes/generate.js";
import { InspectSettings } from "../recipes/inspect.js";
import { JailbreakSettings } from "../recipes/jailbreak.js";
import { TrainSettings } from "../recipes/train.js";

export const RECIPE_SETTINGS = {
  analyze: AnalyzeSettings,
  train: TrainSettings,
  eval: EvalSettings,
  generate: GenerateConfig,
  inspect: InspectSettings,
  "apply-delta": ApplyDeltaSettings,
  jailbreak: JailbreakSettings,
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
