// The run report: one self-contained HTML page that shows what an analysis (and, when present, a
// training and an evaluation) run found. Everything it needs travels inside the file: the data as
// JSON, the page script and style (page/, bundled by `npm run build` next to this module) and the
// charting library (uPlot, read from node_modules at report time), so it opens offline and can be
// mailed around.
//
// Dataset text is hostile (jailbreak prompts, model output). It only ever enters the page as JSON
// inside <script type="application/json"> with every character that could end that element escaped,
// and the page script renders it with textContent. A Content-Security-Policy that admits only the
// page's own scripts (by hash) and no network is the second line of defence.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, join, relative, resolve } from "node:path";
import { z } from "zod";
import type { Messages } from "../domain.js";
import {
  AnalyzedSampleRow,
  BatchesFile,
  EvalConfig,
  EvalResults,
  EvalSampleRow,
  ExpertsFile,
  TrainingMetadata,
  TrainLogRow,
} from "../io/run-files.js";
import { readJson, readJsonl, writeFileAtomic } from "../io/store.js";
import { readRiskDiffTable } from "../io/tables.js";
import { steeringCurves } from "../method/steering.js";

export interface ReportResult {
  path: string;
  /** Run-relative paths of the files a section wanted and did not find. */
  missing: string[];
}

// ---------------------------------------------------------------------------------------------
// What the page shows of each file: the run-file schemas, narrowed to the fields it uses.

const Experts = ExpertsFile.pick({
  moe_layers: true,
  num_experts: true,
  global: true,
  union: true,
  per_batch: true,
});
const Sample = AnalyzedSampleRow.pick({
  sample_id: true,
  pair_id: true,
  batch_idx: true,
  in_batch_idx: true,
  label: true,
  messages: true,
  text: true,
  finish_reason: true,
  verdict: true,
  qc_pass: true,
  kept: true,
  why: true,
});
const TrainRow = TrainLogRow.omit({ sample_ids: true });
const Trained = TrainingMetadata.pick({ trained_experts: true });
const EvalModels = z.array(EvalResults.element.pick({ name: true, steer: true, metrics: true }));
const EvalSample = EvalSampleRow.omit({ reason: true });
const BenchmarkModels = z.array(EvalResults.element.pick({ name: true, steered: true, benchmarks: true }));

// ---------------------------------------------------------------------------------------------
// Reading: each file is either data or, when the run has not written it yet, a one-line note
// saying why its section is empty. A file that is there but damaged stops the report, named: a
// page that quietly leaves out half a run would read as a finished one.

type Loaded<T> = { ok: true; value: T } | { ok: false; note: string };

/** Readers for a run folder's files; remembers which were missing. */
function runFiles(dir: string) {
  const missing = new Set<string>();
  const load = async <T>(rel: string, read: (path: string) => T | Promise<T>): Promise<Loaded<T>> => {
    const path = join(dir, rel);
    if (!existsSync(path)) {
      missing.add(rel);
      return { ok: false, note: `not available: ${rel} missing` };
    }
    return { ok: true, value: await read(path) };
  };
  return {
    missing,
    /** The first of the run-relative `candidates` that exists, else the first one. */
    locate: (...candidates: string[]) => candidates.find((c) => existsSync(join(dir, c))) ?? candidates[0]!,
    json: <S extends z.ZodType>(rel: string, schema: S) => load(rel, (path) => readJson(path, schema)),
    jsonl: <S extends z.ZodType>(rel: string, schema: S) => load(rel, (path) => readJsonl(path, schema)),
    parquet: (rel: string) => load(rel, readRiskDiffTable),
  };
}
type RunFiles = ReturnType<typeof runFiles>;

// ---------------------------------------------------------------------------------------------
// The page's data: one JSON object, slimmed to what the page shows (no token ids, no routing).

function promptText(prompt: Messages): string {
  return prompt.map((m) => `[${m.role}] ${m.content}`).join("\n\n");
}

async function keptBatches(files: RunFiles): Promise<number | null> {
  const batches = await files.json("batches.json", BatchesFile);
  if (!batches.ok) return null;
  return batches.value.batches.filter((b) => b.kept !== false).length;
}

/** Either `{value}` or `{note}`, as the page script expects each part. */
async function part<T>(loading: Promise<Loaded<T>>): Promise<{ value: T } | { note: string }>;
async function part<T, U>(
  loading: Promise<Loaded<T>>,
  map: (value: T) => U | Promise<U>,
): Promise<{ value: U } | { note: string }>;
async function part<T, U>(
  loading: Promise<Loaded<T>>,
  map?: (value: T) => U | Promise<U>,
): Promise<{ value: T | U } | { note: string }> {
  const loaded = await loading;
  if (!loaded.ok) return { note: loaded.note };
  return { value: map ? await map(loaded.value) : loaded.value };
}

/**
 * Per benchmark (in the order the models list them), the unsteered models that ran it, side by
 * side: before and after training. Steered variants have the steering curve.
 */
function byBenchmark(models: z.infer<typeof BenchmarkModels>) {
  const unsteered = models.filter((m) => !m.steered);
  const labels = new Set(unsteered.flatMap((m) => Object.keys(m.benchmarks ?? {})));
  return [...labels].map((label) => ({
    label,
    models: unsteered.flatMap((m) => {
      const result = m.benchmarks?.[label];
      return result ? [{ name: m.name, ...result }] : [];
    }),
  }));
}

/** Why an eval folder with results is not a finished comparison, or null when it is one. */
function unfinishedEval(dir: string): string | null {
  if (!existsSync(join(dir, "results.json"))) return null;
  const config = join(dir, "eval_config.json");
  const { finished } = existsSync(config) ? readJson(config, EvalConfig) : { finished: false };
  return finished === false
    ? `the evaluation in ${dir} did not finish (stopped or killed): its results hold only the models it completed`
    : null;
}

async function collect(runDir: string, evalFolder?: string) {
  const files = runFiles(runDir);
  const evalDir = evalFolder ? relative(runDir, evalFolder) : files.locate("eval", join("train", "eval"));
  const data = {
    run: basename(resolve(runDir)),
    generated: new Date().toISOString(),
    config: await part(files.json("config.json", z.record(z.string(), z.unknown()))),
    riskDiff: await part(files.parquet("risk_diff.parquet")),
    experts: await part(files.json("experts.json", Experts), async (e) => ({
      ...e,
      kept_batches: await keptBatches(files),
    })),
    trained: await part(files.json(join("train", "training_metadata.json"), Trained)),
    trainLog: await part(files.jsonl(join("train", "train_log.jsonl"), TrainRow)),
    evalResults: await part(files.json(join(evalDir, "results.json"), EvalModels)),
    evalUnfinished: unfinishedEval(join(runDir, evalDir)),
    benchmarks: await part(files.json(join(evalDir, "results.json"), BenchmarkModels), byBenchmark),
    steering: await part(files.json(join(evalDir, "results.json"), EvalModels), steeringCurves),
    evalSamples: await part(files.jsonl(join(evalDir, "samples.jsonl"), EvalSample), (rows) =>
      rows.map((r) => ({ ...r, prompt: promptText(r.prompt) })),
    ),
    samples: await part(files.jsonl("samples.jsonl", Sample)),
  };
  return { data, missing: [...files.missing] };
}

/** What the page script reads from its data block. */
export type ReportData = Awaited<ReturnType<typeof collect>>["data"];

// ---------------------------------------------------------------------------------------------
// Assembling the page.

/**
 * JSON that can sit inside a <script> element: `<`, `>` and `&` can neither close the element
 * nor open a comment, and U+2028/2029 are escaped for old JavaScript parsers.
 */
export function scriptSafeJson(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => {
    return "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0");
  });
}

/** Code inlined in <script> must not contain a closing tag; `<\/script` means the same to JS. */
function inlineCode(code: string): string {
  return code.replace(/<\/(script)/gi, "<\\/$1").replace(/<!--/g, "<\\!--");
}

function chartLibrary(): { js: string; css: string } {
  const require = createRequire(import.meta.url);
  let js: string;
  try {
    js = require.resolve("uplot/dist/uPlot.iife.min.js");
  } catch {
    throw new Error("the report needs the npm package uplot (npm install uplot) to draw its charts");
  }
  const css = js.replace(/uPlot\.iife\.min\.js$/, "uPlot.min.css");
  return { js: readFileSync(js, "utf8"), css: readFileSync(css, "utf8") };
}

/** The page's own script and style, as the build left them beside this module. */
function pageFiles(): { js: string; css: string } {
  const read = (name: string) => {
    const url = new URL(`page/${name}`, import.meta.url);
    if (!existsSync(url))
      throw new Error(`the report page is not built (${url.pathname} missing): run npm run build`);
    return readFileSync(url, "utf8");
  };
  return { js: read("page.js"), css: read("page.css") };
}

const sha256 = (text: string) => `'sha256-${createHash("sha256").update(text).digest("base64")}'`;

function renderHtml(data: ReportData): string {
  const lib = chartLibrary();
  const page = pageFiles();
  const scripts = [inlineCode(lib.js), inlineCode(page.js)];
  // Only these two scripts may run; nothing may be fetched. Inline styles are needed by uPlot.
  const csp = [
    "default-src 'none'",
    `script-src ${scripts.map(sha256).join(" ")}`,
    "style-src 'unsafe-inline'",
    "img-src data:",
  ].join("; ");
  return [
    "<!doctype html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${csp}">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    REPORT_TITLE,
    `<style>${lib.css}</style>`,
    `<style>${page.css}</style>`,
    "</head>",
    "<body>",
    '<div id="app"><noscript>This report needs JavaScript.</noscript></div>',
    `<script type="application/json" id="report-data">${scriptSafeJson(data)}</script>`,
    ...scripts.map((code) => `<script>${code}</script>`),
    "</body>",
    "</html>",
    "",
  ].join("\n");
}

/** Writes the run's report; sections whose files are missing say so on the page. */
/** In every report's head: how an existing file is known to be a report (report --out replaces only one). */
export const REPORT_TITLE = "<title>steermoe report</title>";

export async function writeReport(
  runDir: string,
  outPath = join(runDir, "report.html"),
  evalDir?: string,
): Promise<ReportResult> {
  const { data, missing } = await collect(runDir, evalDir);
  if (data.evalUnfinished) process.stderr.write(`steermoe: warning: ${data.evalUnfinished}\n`);
  writeFileAtomic(outPath, renderHtml(data));
  return { path: outPath, missing };
}
