// report: one self-contained report.html for a run folder (analysis, training, evaluation).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../components/errors.js";
import { writeReport, type ReportResult } from "../components/report/report.js";

export async function report(run: string, out?: string): Promise<ReportResult> {
  if (!existsSync(join(run, "config.json"))) {
    throw new UserError(`${run} is not a steermoe run (no config.json); give the folder that analyze wrote`);
  }
  return writeReport(run, out);
}
