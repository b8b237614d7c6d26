// report: one self-contained report.html for a run folder (analysis, training, evaluation).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../components/errors.js";
import { writeReport, type ReportResult } from "../components/report/report.js";

/** `evalDir`: the evaluation to show, when it is not RUN/eval or RUN/train/eval. */
export async function report(run: string, out?: string, evalDir?: string): Promise<ReportResult> {
  if (!existsSync(join(run, "config.json"))) {
    throw new UserError(`${run} is not a steermoe run (no config.json); give the folder that analyze wrote`);
  }
  if (evalDir && !existsSync(join(evalDir, "results.json")))
    throw new UserError(`${evalDir}: no results.json; give the folder eval --out wrote`);
  return writeReport(run, out, evalDir);
}
