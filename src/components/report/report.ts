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
import { basename, join, resolve } from "node:path";
import { z } from "zod";
import { zodProblem } from "../errors.js";
import { ExpertSetSchema } from "../method/riskdiff.js";
import { writeFileAtomic } from "../io/store.js";
import { csvRows } from "../io/tables.js";

export interface ReportResult {
  path: string;
  /** Run-relative paths of the files a section wanted and did not find. */
  missing: string[];
}

// ---------------------------------------------------------------------------------------------
// File schemas: only the fields the page shows; anything else in a row is ignored.

const num = z.number().nullable();
const int = z.number().int();
const Message = z.object({ role: z.string(), content: z.string() });

const RiskRow = z.object({
  layer: int,
  expert: int,
  label: z.string(),
  a_safe: num,
  d_safe: num,
  a_unsafe: num,
  d_unsafe: num,
  a_safe_n: num,
  a_unsafe_n: num,
  risk_diff: num,
  std: num,
  ci_low: num,
  ci_high: num,
  frac_positive: num,
  n_batches: num,
});

const ExpertsFile = z.object({
  moe_layers: z.array(int),
  num_experts: int,
  global: ExpertSetSchema,
  union: ExpertSetSchema,
  per_batch: z.array(z.object({ batch_idx: int, experts: ExpertSetSchema })),
});

const BatchesFile = z.object({
  batches: z.array(z.object({ batch_idx: int, kept: z.boolean().optional() })),
});

const SampleRow = z.object({
  sample_id: z.string(),
  pair_id: z.string(),
  batch_idx: int,
  in_batch_idx: int,
  label: z.string(),
  messages: z.array(Message),
  text: z.string(),
  finish_reason: z.string().optional(),
  verdict: z.object({ isRefusal: z.boolean(), confidence: z.number(), reason: z.string() }).nullish(),
  qc_pass: z.boolean().nullish(),
  kept: z.boolean().optional(),
  why: z.string().nullish(),
});

const TrainRow = z.object({
  step: z.number(),
  epoch: z.number().optional(),
  batch_idx: z.number().optional(),
  loss: num.optional(),
  router_loss: num.optional(),
  lr: num.optional(),
  grad_norm: num.optional(),
  tokens: num.optional(),
  seconds: num.optional(),
});

const TrainingMetadata = z.looseObject({
  trained_experts: z.array(z.object({ layer: int, expert: int, label: z.string() })),
});

const Rate = z.object({ rate: num, low: num.optional(), high: num.optional(), n: num.optional() });
const EvalResults = z.array(z.object({ name: z.string(), metrics: z.record(z.string(), Rate) }));

const EvalSample = z.object({
  model: z.string(),
  set: z.string(),
  id: z.union([z.string(), z.number()]),
  prompt: z.union([z.string(), z.array(Message)]),
  response: z.string(),
  is_refusal: z.boolean().nullish(),
});

// ---------------------------------------------------------------------------------------------
// Reading: each file is either data or a one-line note saying why its section is empty.

type Loaded<T> = { ok: true; value: T } | { ok: false; note: string };

/** Readers for a run folder's files; remembers which were missing. */
function runFiles(dir: string) {
  const missing = new Set<string>();
  const load = <T>(rel: string, parse: (text: string) => Loaded<T>): Loaded<T> => {
    const path = join(dir, rel);
    if (!existsSync(path)) {
      missing.add(rel);
      return { ok: false, note: `not available: ${rel} missing` };
    }
    try {
      const loaded = parse(readFileSync(path, "utf8"));
      return loaded.ok ? loaded : { ok: false, note: `not available: ${rel} ${loaded.note}` };
    } catch (err) {
      return { ok: false, note: `not available: ${rel} unreadable: ${(err as Error).message}` };
    }
  };
  return {
    missing,
    /** The first of the run-relative `candidates` that exists, else the first one. */
    locate: (...candidates: string[]) => candidates.find((c) => existsSync(join(dir, c))) ?? candidates[0]!,
    json: <S extends z.ZodType>(rel: string, schema: S) =>
      load(rel, (text) => checked(schema, JSON.parse(text), "")),
    jsonl: <S extends z.ZodType>(rel: string, schema: S) =>
      load(rel, (text) => checkedRows(schema, jsonlRows(text), "line")),
    csv: <S extends z.ZodType>(rel: string, schema: S) =>
      load(rel, (text) => checkedRows(schema, csvRows(text), "row")),
  };
}
type RunFiles = ReturnType<typeof runFiles>;

function checked<S extends z.ZodType>(schema: S, value: unknown, where: string): Loaded<z.infer<S>> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return { ok: true, value: parsed.data };
  return { ok: false, note: `${where ? where + " " : ""}${zodProblem(parsed.error)}` };
}

function checkedRows<S extends z.ZodType>(schema: S, rows: unknown[], unit: string): Loaded<z.infer<S>[]> {
  const out: z.infer<S>[] = [];
  for (const [i, row] of rows.entries()) {
    const one = checked(schema, row, `${unit} ${i + 1}`);
    if (!one.ok) return one;
    out.push(one.value);
  }
  return { ok: true, value: out };
}

function jsonlRows(text: string): unknown[] {
  return text
    .split("\n")
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line) as unknown);
}

// ---------------------------------------------------------------------------------------------
// The page's data: one JSON object, slimmed to what the page shows (no token ids, no routing).

function promptText(prompt: string | z.infer<typeof Message>[]): string {
  return typeof prompt === "string" ? prompt : prompt.map((m) => `[${m.role}] ${m.content}`).join("\n\n");
}

function keptBatches(files: RunFiles): number | null {
  const batches = files.json("batches.json", BatchesFile);
  if (!batches.ok) return null;
  return batches.value.batches.filter((b) => b.kept !== false).length;
}

/** Either `{value}` or `{note}`, as the page script expects each part. */
function part<T>(loaded: Loaded<T>): { value: T } | { note: string };
function part<T, U>(loaded: Loaded<T>, map: (value: T) => U): { value: U } | { note: string };
function part<T, U>(loaded: Loaded<T>, map?: (value: T) => U): { value: T | U } | { note: string } {
  if (!loaded.ok) return { note: loaded.note };
  return { value: map ? map(loaded.value) : loaded.value };
}

function collect(runDir: string) {
  const files = runFiles(runDir);
  const evalDir = files.locate("eval", join("train", "eval"));
  const data = {
    run: basename(resolve(runDir)),
    generated: new Date().toISOString(),
    config: part(files.json("config.json", z.record(z.string(), z.unknown()))),
    riskDiff: part(files.csv("risk_diff.csv", RiskRow)),
    experts: part(files.json("experts.json", ExpertsFile), (e) => ({
      ...e,
      kept_batches: keptBatches(files),
    })),
    trained: part(files.json(join("train", "training_metadata.json"), TrainingMetadata)),
    trainLog: part(files.jsonl(join("train", "train_log.jsonl"), TrainRow)),
    evalResults: part(files.json(join(evalDir, "results.json"), EvalResults)),
    evalSamples: part(files.jsonl(join(evalDir, "samples.jsonl"), EvalSample), (rows) =>
      rows.map((r) => ({ ...r, id: String(r.id), prompt: promptText(r.prompt) })),
    ),
    samples: part(files.jsonl("samples.jsonl", SampleRow)),
  };
  return { data, missing: [...files.missing] };
}

/** What the page script reads from its data block. */
export type ReportData = ReturnType<typeof collect>["data"];

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
    "<title>steermoe report</title>",
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
export function writeReport(runDir: string, outPath = join(runDir, "report.html")): ReportResult {
  const { data, missing } = collect(runDir);
  writeFileAtomic(outPath, renderHtml(data));
  return { path: outPath, missing };
}
