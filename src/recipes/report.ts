// report: one self-contained report.html for a run folder (analysis, training, evaluation).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../components/errors.js";
import { checkOutputFile, checkRunFolder } from "../components/io/run.js";
import { readJson } from "../components/io/store.js";
import { REPORT_TITLE, writeReport, type ReportResult } from "../components/report/report.js";
import { z } from "zod";

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
  // A model folder has a config.json too: report.html there would change the model's fingerprint.
  const { kind } = readJson(join(run, "config.json"), z.looseObject({ kind: z.unknown().optional() }));
  if (kind !== "analyze")
    throw new UserError(
      `${run} is not a steermoe analysis run (its config.json is not analyze's); give the folder that analyze wrote`,
    );
  if (evalDir && !existsSync(join(evalDir, "results.json")))
    throw new UserError(`${evalDir}: no results.json; give the folder eval --out wrote`);
  const page = out ?? join(run, "report.html");
  checkOutputFile(page, "steermoe report", (head) => head.includes(REPORT_TITLE));
  return writeReport(run, page, evalDir);
}
