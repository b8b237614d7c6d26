// jailbreak: from a list of harmful goals to jailbreak pairs in the FlipAttack record shape
// ({id, goal, flip_attack, all_prompt}), which `analyze --preset flipattack --keep-filtered` reads;
// analyze's quality control then keeps the pairs the model refuses plainly and obeys wrapped.
import { z } from "zod";
import { BenchmarkSpec, loadBenchmark } from "../components/data/benchmarks.js";
import { flipAttack, FlipAttackOptions } from "../components/data/flipattack.js";
import { UserError, zodProblem } from "../components/errors.js";
import { TextEncoding, writeJsonAtomic } from "../components/io/store.js";

export const JailbreakSettings = z.strictObject({
  attack: z.literal("flipattack").default("flipattack"),
  /** Where the goals come from: benchmarks, or files of goals (harmful prompts only are used). */
  benchmarks: z.array(BenchmarkSpec).optional(),
  benchmarkDir: z.string().min(1).optional(),
  /** A file of goals (CSV, JSON, JSONL or Parquet) and the column holding them. */
  goals: z.string().min(1).optional(),
  goalColumn: z.string().min(1).default("goal"),
  /** How the data files' bytes are text (docs/method.md: data files): invalid UTF-8 is refused unless asked. */
  encoding: TextEncoding.default("utf8"),
  flipattack: FlipAttackOptions.prefault({}),
});
export type JailbreakSettings = z.input<typeof JailbreakSettings>;

export interface JailbreakRecord {
  id: string;
  goal: string;
  flip_attack: string;
  all_prompt: ReturnType<typeof flipAttack>["all_prompt"];
  category?: string;
}

export async function jailbreak(input: JailbreakSettings, out: string): Promise<JailbreakRecord[]> {
  const parsed = JailbreakSettings.safeParse(input);
  if (!parsed.success) throw new UserError(`jailbreak settings ${zodProblem(parsed.error)}`);
  const settings = parsed.data;
  const sources = [
    ...(settings.benchmarks ?? []),
    ...(settings.goals ? [{ name: "goals", file: settings.goals, prompt: settings.goalColumn }] : []),
  ];
  if (sources.length === 0) throw new UserError("jailbreak needs --goals FILE or --benchmark NAME");
  const records: JailbreakRecord[] = [];
  for (const source of sources) {
    const { items } = await loadBenchmark(source, settings.benchmarkDir, settings.encoding);
    for (const item of items.filter((i) => i.kind === "harmful")) {
      records.push({
        // One source keeps its own ids; several are told apart by their label.
        id: sources.length === 1 ? item.id : `${item.benchmark}:${item.id}`,
        goal: item.prompt,
        ...flipAttack(item.prompt, settings.flipattack),
        ...(item.category !== undefined && { category: item.category }),
      });
    }
  }
  if (records.length === 0) throw new UserError("jailbreak: the sources hold no harmful goals");
  writeJsonAtomic(out, records);
  return records;
}
