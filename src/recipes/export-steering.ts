// export-steering: an analysis run's steering map in plain formats any runtime can read.
//
//   json  {format, model, layer_indexing, bias_rule, num_layers, moe_layers, num_experts, from,
//          biases: [{layer, expert, bias}]}  (bias "inf"/"-inf" where infinite: JSON has none)
//   npy   float32 [num_layers, num_experts], row = decoder layer, ±inf as IEEE infinities; .npy
//         has no room for text, so FILE.json next to it states the model and the indexing.
import { existsSync } from "node:fs";
import { extname, join } from "node:path";
import { UserError } from "../components/errors.js";
import { checkOutputFile } from "../components/io/run.js";
import { z } from "zod";
import { AnalysisConfig } from "../components/io/run-files.js";
import { readJson, writeJsonAtomic } from "../components/io/store.js";
import { writeNpy } from "../components/io/tables.js";
import { SteerFrom, steerFromRun, steeringFile, steeringMatrix } from "../components/method/steering.js";

export const ExportSteeringSettings = SteerFrom.extend({
  run: z.string().min(1),
  format: z.enum(["json", "npy"]).default("json"),
  out: z.string().min(1),
});
export type ExportSteeringSettings = z.input<typeof ExportSteeringSettings>;

/** The files written and the number of experts with a bias. */
export async function exportSteering(
  input: ExportSteeringSettings,
): Promise<{ files: string[]; experts: number }> {
  const { run, format, out, ...from } = ExportSteeringSettings.parse(input);
  // Readers (--steer among them) tell the format by the extension.
  if ((extname(out).toLowerCase() === ".npy") !== (format === "npy"))
    throw new UserError(
      format === "npy"
        ? `--out ${out}: --format npy writes a .npy file; name it ${out.slice(0, out.length - extname(out).length)}.npy`
        : `--out ${out}: a .npy name for a JSON map; give --format npy, or name it ${out.slice(0, out.length - extname(out).length)}.json`,
    );
  // Only a map this command wrote is replaced: never the run's experts.json or any other file.
  const isMap = (text: string) => text.includes('"format": "steermoe steering map"');
  if (format === "json") checkOutputFile(out, "steering map", isMap);
  else {
    checkOutputFile(`${out}.json`, "steering map", isMap);
    checkOutputFile(out, "steering map", () => existsSync(`${out}.json`));
  }
  const config = readJson(join(run, "config.json"), AnalysisConfig, "give a finished analysis run to --run");
  const steering = await steerFromRun(run, from);
  const file = steeringFile(steering, config.model, config.settings.model.source);
  if (format === "json") {
    writeJsonAtomic(out, file);
    return { files: [out], experts: file.biases.length };
  }
  writeNpy(out, steeringMatrix(steering, config.model), [config.model.numLayers, config.model.numExperts]);
  writeJsonAtomic(`${out}.json`, file);
  return { files: [out, `${out}.json`], experts: file.biases.length };
}
