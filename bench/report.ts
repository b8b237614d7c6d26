// docs/benchmarks.md is generated; a "## Notes" section at its end is written by hand, and the GPU
// section between its markers by bench/gpu.py (Python alone: a GPU machine may have no node). Both
// are carried over from the previous file on every run.
import { existsSync, readFileSync, writeFileSync } from "node:fs";

const NOTES_HEADING = /^## Notes\s*$/m;

export function keptNotes(path: string): string | undefined {
  if (!existsSync(path)) return undefined;
  const text = readFileSync(path, "utf8");
  const match = NOTES_HEADING.exec(text);
  return match ? text.slice(match.index).trimEnd() + "\n" : undefined;
}

const GPU_START = "<!-- bench/gpu.py: start -->";
const GPU_END = "<!-- bench/gpu.py: end -->";

/** The GPU section as the previous file has it, markers included; a placeholder before the first. */
export function keptGpuSection(path: string): string {
  const text = existsSync(path) ? readFileSync(path, "utf8") : "";
  const start = text.indexOf(GPU_START);
  const end = text.indexOf(GPU_END, start);
  if (start >= 0 && end >= 0) return text.slice(start, end + GPU_END.length);
  const how = "`PYTHONPATH=engine python bench/gpu.py --write docs/benchmarks.md` on a machine with CUDA";
  return [GPU_START, "## GPU (bench/gpu.py)", "", `Not run yet: ${how}.`, GPU_END].join("\n");
}

/** Written as prettier prints it, so `npm run lint` (prettier --check .) stays clean. */
export async function writeFormatted(path: string, text: string): Promise<void> {
  const prettier = await import("prettier");
  const options = (await prettier.resolveConfig(path)) ?? {};
  writeFileSync(path, await prettier.format(text, { ...options, filepath: path }));
}

export async function writeReport(path: string, generated: string): Promise<void> {
  const notes = keptNotes(path);
  await writeFormatted(path, generated.trimEnd() + "\n" + (notes ? "\n" + notes : ""));
}

export function table(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

export type Verdict = { met: boolean; text: string };

export function verdict(met: boolean, text: string): Verdict {
  return { met, text };
}

export const mark = (v: Verdict) => (v.met ? "**met**" : "**missed**");
