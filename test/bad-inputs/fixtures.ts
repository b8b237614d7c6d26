// Inputs the bad-input cases damage: a tiny model and a finished analysis run, each built once per
// test file (the engine costs seconds) and copied into a case's folder before it is damaged.
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildTiny, flipattackRecords, run } from "../helpers.js";

let folder: string | undefined;
let model: Promise<string> | undefined;
let analysed: Promise<{ model: string; run: string }> | undefined;

/** A folder for the file's fixtures, removed when its process ends (a test's own cleanup would
 * take them from the next case). */
function fixtureDir(): string {
  if (!folder) {
    const dir = mkdtempSync(join(tmpdir(), "steermoe-bad-inputs-"));
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
    folder = dir;
  }
  return folder;
}

/** A tiny model, shared by one file's cases. */
export function tinyModel(): Promise<string> {
  model ??= buildTiny(fixtureDir());
  return model;
}

/** The tiny model and an analysis run made with it (2 batches of 4), shared by one file's cases. */
export function analysedRun(): Promise<{ model: string; run: string }> {
  analysed ??= (async () => {
    const dir = fixtureDir();
    const source = await tinyModel();
    writeFileSync(join(dir, "data.json"), JSON.stringify(flipattackRecords(4)));
    const runDir = join(dir, "run");
    const made = run([...analyzeArgs(runDir, source), "--data", join(dir, "data.json")]);
    if (made.status !== 0) throw new Error(`the fixture run failed: ${made.stderr}`);
    return { model: source, run: runDir };
  })();
  return analysed;
}

/** analyze's arguments for the fixture's settings (without --data). */
export const analyzeArgs = (runDir: string, model: string) => [
  "analyze",
  "--run",
  runDir,
  "--model",
  model,
  "--batch-size",
  "4",
  "--max-new-tokens",
  "3",
  "--qc",
  "off",
];

/** The fixture run, copied to `dir`/run for a case to damage; returns the copy's path. */
export async function copyOfRun(dir: string): Promise<string> {
  const copy = join(dir, "run");
  cpSync((await analysedRun()).run, copy, { recursive: true });
  return copy;
}

/** `text` written to `dir`/`name`; returns the name (cases run in `dir`). */
export function file(dir: string, name: string, text: string): string {
  writeFileSync(join(dir, name), text);
  return name;
}
