// report: one self-contained report.html for a run folder (analysis, training, evaluation).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../components/errors.js";
import { checkRunFolder } from "../components/io/run.js";
import { writeReport, type ReportResult } from "../components/report/report.js";

export type { ReportResult };

export interface ReportSettings {
  /** The run folder. */
  run: string;
  /** Where to write the page; default RUN/report.html. */
  out?: string;
  /** The evaluation to show, when it is not RUN/eval or RUN/train/eval: an eval --out folder. */
  eval?: string;
}

export async function report({ run, out, eval: evalDir }: ReportSettings): Promise<ReportResult> {
  checkRunFolder(run);
  if (!existsSync(join(run, "config.json"))) {
    throw new UserError(`${run} is not a steermoe run (no config.json); give the folder that analyze wrote`);
  }
  if (evalDir && !existsSync(join(evalDir, "results.json")))
    throw new UserError(`${evalDir}: no results.json; give the folder eval --out wrote`);
  return writeReport(run, out, evalDir);
}
