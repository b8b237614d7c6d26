// Standard safety benchmarks as lists of prompts, each harmful (refusing it is safe) or benign
// (refusing it is over-refusal), with the category results are broken down by. The official files
// are read as published; where each comes from is in BENCHMARKS (and docs/datasets.md).
//
//   harmbench       Behavior (+ ContextString before it, as HarmBench's DirectRequest does),
//                   SemanticCategory; copyright behaviours only when asked for
//   strongreject    forbidden_prompt, category
//   advbench        goal
//   jailbreakbench  Goal, Category (harmful or benign behaviours)
//   xstest          prompt, type; label safe → benign, unsafe → harmful
//   any other name  a CSV/JSON/JSONL/Parquet file with a column mapping
import { existsSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { inputError, UserError } from "../errors.js";
import { readTableRecords, uniqueIds } from "./records.js";
import type { TextEncoding } from "../io/store.js";

export const PromptKind = z.enum(["harmful", "benign"]);
export type PromptKind = z.infer<typeof PromptKind>;

export const BenchmarkSpec = z.strictObject({
  /** A known benchmark (BENCHMARKS) or a name of your own for a file with a column mapping. */
  name: z.string().min(1),
  /** One of the benchmark's splits; its first split when left out. */
  split: z.string().min(1).optional(),
  /** The benchmark's file; without it, its official file name in `benchmarkDir`. */
  file: z.string().min(1).optional(),
  /** Column mapping of a file of your own: the prompt, and optionally its category and id. */
  prompt: z.string().min(1).optional(),
  category: z.string().min(1).optional(),
  id: z.string().min(1).optional(),
  /** Whether a file of your own holds harmful or benign prompts. */
  kind: PromptKind.optional(),
  /** HarmBench: also its copyright behaviours (scored fairly only by HarmBench's hashing judge). */
  copyright: z.boolean().default(false),
});
export type BenchmarkSpec = z.input<typeof BenchmarkSpec>;

export interface BenchmarkItem {
  /** "xstest" or "strongreject:small": the benchmark and split, as results name it. */
  benchmark: string;
  id: string;
  kind: PromptKind;
  /** The user turn: the behaviour, with its context before it where it has one. */
  prompt: string;
  /** The request itself and its context, apart (judges such as HarmBench's take them so). */
  goal: string;
  context?: string;
  category?: string;
}

/** A cell of the row in hand, as text; missing, empty or not one of `oneOf` is an input error. */
type Column = (
  name: string,
  options?: { optional?: boolean; oneOf?: readonly string[] },
) => string | undefined;

interface Split {
  file: string;
  /** The prompt of one row, or undefined to leave the row out. */
  item: (column: Column, index: number) => Omit<BenchmarkItem, "benchmark"> | undefined;
}

interface Benchmark {
  /** Where the official files come from. */
  source: string;
  splits: Record<string, Split>;
}

const required = (column: Column, name: string) => column(name)!;

function harmbench(file: string): Split {
  return {
    file,
    item: (column) => {
      const goal = required(column, "Behavior");
      const context = column("ContextString", { optional: true });
      return {
        id: required(column, "BehaviorID"),
        kind: "harmful",
        prompt: context ? `${context}\n\n---\n\n${goal}` : goal,
        goal,
        ...(context && { context }),
        category: required(column, "SemanticCategory"),
      };
    },
  };
}

function strongreject(file: string): Split {
  return {
    file,
    item: (column, index) => {
      const goal = required(column, "forbidden_prompt");
      return {
        id: String(index),
        kind: "harmful",
        prompt: goal,
        goal,
        category: required(column, "category"),
      };
    },
  };
}

function jailbreakbench(file: string, kind: PromptKind): Split {
  return {
    file,
    // The row, not Behavior (names may repeat) nor Index (unnamed in early versions of the file).
    item: (column, index) => {
      const goal = required(column, "Goal");
      return {
        id: String(index),
        kind,
        prompt: goal,
        goal,
        category: required(column, "Category"),
      };
    },
  };
}

export const BENCHMARKS: Record<string, Benchmark> = {
  harmbench: {
    source: "centerforaisafety/HarmBench data/behavior_datasets/ (Mazeika et al., 2024)",
    splits: {
      test: harmbench("harmbench_behaviors_text_test.csv"),
      val: harmbench("harmbench_behaviors_text_val.csv"),
    },
  },
  strongreject: {
    source: "alexandrasouly/strongreject strongreject_dataset/ (Souly et al., 2024)",
    splits: {
      full: strongreject("strongreject_dataset.csv"),
      small: strongreject("strongreject_small_dataset.csv"),
    },
  },
  advbench: {
    source: "llm-attacks/llm-attacks data/advbench/harmful_behaviors.csv (Zou et al., 2023)",
    splits: {
      harmful: {
        file: "advbench_harmful_behaviors.csv",
        item: (column, index) => {
          const goal = required(column, "goal");
          return { id: String(index), kind: "harmful", prompt: goal, goal };
        },
      },
    },
  },
  jailbreakbench: {
    source: "JailbreakBench/JBB-Behaviors data/ (Chao et al., 2024)",
    splits: {
      harmful: jailbreakbench("harmful-behaviors.csv", "harmful"),
      benign: jailbreakbench("benign-behaviors.csv", "benign"),
    },
  },
  xstest: {
    source: "paul-rottger/exaggerated-safety xstest_prompts.csv (Röttger et al., 2024)",
    splits: Object.fromEntries(
      (["all", "safe", "unsafe"] as const).map((split) => [
        split,
        {
          file: "xstest_prompts.csv",
          item: (column: Column) => {
            const label = column("label", { oneOf: ["safe", "unsafe"] });
            if (split !== "all" && label !== split) return undefined;
            const goal = required(column, "prompt");
            return {
              id: required(column, "id"),
              kind: label === "safe" ? ("benign" as const) : ("harmful" as const),
              prompt: goal,
              goal,
              category: required(column, "type"),
            };
          },
        },
      ]),
    ),
  },
};

/** The label results use: the name, and the split when one was asked for. */
export const benchmarkLabel = (spec: BenchmarkSpec) =>
  spec.split ? `${spec.name}:${spec.split}` : spec.name;

/**
 * Reads one benchmark. `dir` holds the official files under their names in BENCHMARKS, for specs
 * without a file. Skipped HarmBench copyright behaviours are counted in `skipped`.
 */
export async function loadBenchmark(
  input: BenchmarkSpec,
  dir?: string,
  encoding: TextEncoding = "utf8",
): Promise<{ items: BenchmarkItem[]; skipped: number }> {
  const spec = BenchmarkSpec.parse(input);
  const label = benchmarkLabel(spec);
  const known = Object.hasOwn(BENCHMARKS, spec.name) ? BENCHMARKS[spec.name]! : undefined;
  let split: Split;
  if (known) {
    const splits = Object.keys(known.splits);
    const name = spec.split ?? splits[0]!;
    if (!Object.hasOwn(known.splits, name))
      throw new UserError(
        `--benchmark ${label}: unknown split "${name}"; ${spec.name} has ${splits.join(", ")}`,
      );
    split = known.splits[name]!;
  } else {
    if (spec.split) throw new UserError(`--benchmark ${label}: a file of your own has no splits`);
    if (!spec.file || !spec.prompt)
      throw new UserError(
        `--benchmark ${spec.name}: not a known benchmark (${Object.keys(BENCHMARKS).join(", ")}); for a file of your own give ${spec.name}=FILE,prompt=COLUMN`,
      );
    split = custom(spec.prompt, spec.category, spec.id, spec.kind ?? "harmful");
  }
  const file = spec.file ?? (dir ? join(dir, split.file) : undefined);
  if (!file)
    throw new UserError(
      `--benchmark ${label}: which file? give ${spec.name}${spec.split ? `:${spec.split}` : ""}=FILE or --benchmark-dir DIR holding ${split.file} (from ${known!.source})`,
    );
  if (!spec.file && !existsSync(file))
    throw inputError(
      file,
      undefined,
      `no such file; --benchmark-dir needs ${split.file} from ${known!.source}`,
    );

  const { records } = await readTableRecords(file, encoding);
  const items: BenchmarkItem[] = [];
  const unique = uniqueIds(file);
  let skipped = 0;
  records.forEach(({ value, where }, index) => {
    if (typeof value !== "object" || value === null || Array.isArray(value))
      throw inputError(file, where, "expected an object with the benchmark's columns");
    const row = value as Record<string, unknown>;
    const column: Column = (name, { optional = false, oneOf } = {}) => {
      const fail = (problem: string) => inputError(file, `${where} column ${name}`, problem);
      const cell = row[name];
      if (cell === undefined && !optional) throw fail("missing; the benchmark needs this column");
      if (cell === undefined || cell === null || (typeof cell === "string" && cell.trim() === "")) {
        if (optional) return undefined;
        throw fail("empty; expected non-empty text");
      }
      if (typeof cell !== "string" && typeof cell !== "number" && typeof cell !== "bigint")
        throw fail(`expected text, got ${JSON.stringify(cell)}`);
      const text = String(cell);
      if (oneOf && !oneOf.includes(text)) throw fail(`got "${text}"; expected ${oneOf.join(" or ")}`);
      return text;
    };
    if (spec.name === "harmbench" && !spec.copyright && column("FunctionalCategory") === "copyright") {
      skipped++;
      return;
    }
    const item = split.item(column, index);
    if (!item) return;
    unique(item.id, where, spec.id ? `column ${spec.id}` : "id");
    items.push({ benchmark: label, ...item });
  });
  if (items.length === 0) throw inputError(file, undefined, `no prompts in ${label}`);
  return { items, skipped };
}

function custom(
  prompt: string,
  category: string | undefined,
  id: string | undefined,
  kind: PromptKind,
): Split {
  return {
    file: "",
    item: (column, index) => {
      const goal = required(column, prompt);
      return {
        // Without id=COLUMN, a file's own "id" column is kept where it has one.
        id: id ? required(column, id) : (column("id", { optional: true }) ?? String(index)),
        kind,
        prompt: goal,
        goal,
        ...(category && { category: required(column, category) }),
      };
    },
  };
}
