// demo: the whole method, end to end, on the model organism, in a few minutes on a CPU.
//
//   analyze (organism + synthetic FlipAttack data) → train (unsafe experts only)
//   → eval before/after on held-out data → report.html
//
// Settings live in organism/demo.json.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { PACKAGE_ROOT, withEngine, type EngineHandle } from "../components/engine/client.js";
import { prepareOutDir } from "../components/io/run.js";
import { analyze, AnalyzeSettings } from "./analyze.js";
import { evaluate, EvalSettings, type ModelResult } from "./evaluate.js";
import { report } from "./report.js";
import { train, TrainSettings } from "./train.js";

const DemoConfig = z.object({
  model: z.string(),
  analyze: AnalyzeSettings.omit({ model: true }).partial({ data: true }).loose(),
  train: TrainSettings.loose(),
  eval: EvalSettings.omit({ models: true }).loose(),
});

export interface DemoResult {
  run: string;
  report?: string;
  results: ModelResult[];
  trainedExperts: number;
  totalExperts: number;
  complete: boolean;
}

/** Paths in the demo config are relative to the package, wherever steermoe runs from. */
const fromPackage = (path: string) => join(PACKAGE_ROOT, path);

export interface DemoSettings {
  /** The run folder. */
  out: string;
  /** Replace an existing run folder. */
  overwrite?: boolean;
}

export async function demo(
  settings: DemoSettings,
  options: { engine?: EngineHandle; signal?: AbortSignal } = {},
): Promise<DemoResult> {
  const config = DemoConfig.parse(JSON.parse(readFileSync(fromPackage("organism/demo.json"), "utf8")));
  prepareOutDir(settings.out, settings.overwrite ?? false, "config.json");
  const model = fromPackage(config.model);
  const run = settings.out;
  return withEngine(options.engine ?? {}, async (engine) => {
    const analysis = await analyze(
      {
        ...config.analyze,
        model: { source: model },
        data: { ...config.analyze.data!, file: fromPackage(config.analyze.data!.file) },
      },
      { run, engine, signal: options.signal },
    );
    const incomplete = { run, results: [], trainedExperts: 0, totalExperts: 0, complete: false };
    if (!analysis.complete) return incomplete;
    const trained = await train({ ...config.train, run }, { engine, signal: options.signal });
    if (!trained.complete) return incomplete;
    const results = await evaluate(
      {
        ...config.eval,
        jailbreaks: config.eval.jailbreaks && fromPackage(config.eval.jailbreaks),
        benign: config.eval.benign && fromPackage(config.eval.benign),
        models: [
          { name: "before", model: { source: model } },
          { name: "after", model: { source: join(run, "train", "final_model") } },
        ],
      },
      { out: join(run, "eval"), engine },
    );
    const page = await report({ run });
    return {
      run,
      report: page.path,
      results,
      trainedExperts: trained.trainedExperts,
      totalExperts: trained.totalExperts,
      complete: true,
    };
  });
}
