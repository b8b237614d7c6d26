// A jailbreak dataset becomes Pairs: for each record, the harmful request asked plainly (safe) and
// wrapped in the jailbreak (unsafe). Every dataset goes through one DatasetMapping; presets such as
// flipattack are just mappings, so a new dataset needs a config entry, not code.
import { z } from "zod";
import { inputError, UserError } from "../errors.js";
import { Messages, Role, type Message } from "../domain.js";
import { readRecords, uniqueIds } from "./records.js";
import type { TextEncoding } from "../io/store.js";

export interface Pair {
  pairId: string;
  safe: Messages;
  unsafe: Messages;
  source: Record<string, unknown>;
}

// A field holding either a message list (used as given) or a string (one user message, after the
// optional system prompt; the system prompt is not added to message lists, which carry their own).
export const PromptFieldSchema = z.strictObject({
  field: z.string().min(1),
  system: z.string().optional(),
});

const ScalarSchema = z.union([z.string(), z.number(), z.boolean(), z.null()]);
type Scalar = z.infer<typeof ScalarSchema>;

export const DatasetMappingSchema = z.strictObject({
  /** Field holding a string or number id; without it the record index is the id. */
  idField: z.string().min(1).optional(),
  safe: PromptFieldSchema,
  unsafe: PromptFieldSchema,
  /**
   * Keeps records whose field strictly equals one of `keep` (0, "0" and false are different values)
   * and drops those equal to one of `drop`; any other value is an error, so a dataset that spells
   * its labels some new way is never silently half-filtered.
   */
  filter: z
    .strictObject({
      field: z.string().min(1),
      keep: z.array(ScalarSchema).min(1),
      drop: z.array(ScalarSchema).default([]),
    })
    .optional(),
  /** Original fields copied into Pair.source when the record has them. */
  sourceFields: z.array(z.string().min(1)).default([]),
});
export type DatasetMapping = z.infer<typeof DatasetMappingSchema>;

export const PRESETS = {
  flipattack: {
    idField: "id",
    safe: { field: "goal", system: "You are a helpful assistant." },
    unsafe: { field: "all_prompt" },
    // Only jailbreaks that actually worked on the model tell safe routing apart from unsafe. The
    // judge's verdict appears as a number or as a string, depending on who wrote the file.
    filter: { field: "judge_success_gpt4", keep: [1, "1"], drop: [0, "0"] },
    sourceFields: ["goal", "flip_attack", "judge_success_gpt4"],
  },
} satisfies Record<string, DatasetMapping>;
export type PresetName = keyof typeof PRESETS;

export function presetMapping(name: string): DatasetMapping {
  if (!Object.hasOwn(PRESETS, name)) {
    throw new UserError(`unknown dataset preset "${name}": use one of ${Object.keys(PRESETS).join(", ")}`);
  }
  return PRESETS[name as PresetName];
}

export interface LoadPairsOptions {
  /** Ignore the mapping's filter and keep every record. */
  keepFiltered?: boolean;
  /** How the file's bytes are text: strict UTF-8 unless given. */
  encoding?: TextEncoding;
}

export interface LoadedDataset {
  pairs: Pair[];
  datasetSha256: string;
  /** Records in the file, before the filter. */
  recordCount: number;
}

export function loadPairs(
  file: string,
  mapping: DatasetMapping,
  options: LoadPairsOptions = {},
): LoadedDataset {
  const { records, sha256: datasetSha256 } = readRecords(file, options.encoding);
  const unique = uniqueIds(file);
  const pairs: Pair[] = [];
  records.forEach((raw, index) => {
    const { where } = raw;
    const fail = (field: string, problem: string) => inputError(file, `${where} field ${field}`, problem);
    if (typeof raw.value !== "object" || raw.value === null || Array.isArray(raw.value)) {
      throw inputError(file, where, "expected an object with the dataset's fields");
    }
    const record = raw.value as Record<string, unknown>;

    const pairId = readId(record, index, mapping.idField, fail);
    unique(pairId, where, `field ${mapping.idField ?? "id"}`);

    const safe = readPrompt(record, mapping.safe, fail);
    const unsafe = readPrompt(record, mapping.unsafe, fail);
    if (mapping.filter && !options.keepFiltered && !filterKeeps(record, mapping.filter, fail)) return;
    const source: Record<string, unknown> = {};
    for (const field of mapping.sourceFields) if (Object.hasOwn(record, field)) source[field] = record[field];
    pairs.push({ pairId, safe, unsafe, source });
  });

  if (pairs.length === 0) {
    throw inputError(
      file,
      undefined,
      `the filter on field ${mapping.filter?.field} dropped all ${records.length} records; keep filtered records or change the filter`,
    );
  }
  return { pairs, datasetSha256, recordCount: records.length };
}

type Fail = (field: string, problem: string) => UserError;

function filterKeeps(
  record: Record<string, unknown>,
  { field, keep, drop }: NonNullable<DatasetMapping["filter"]>,
  fail: Fail,
): boolean {
  if (!Object.hasOwn(record, field)) {
    throw fail(field, "missing; the dataset filter needs it (add the field or keep filtered records)");
  }
  const value = record[field];
  if (keep.includes(value as Scalar)) return true;
  if (drop.includes(value as Scalar)) return false;
  const list = (values: Scalar[]) => values.map((v) => JSON.stringify(v)).join(", ");
  throw fail(
    field,
    `got ${JSON.stringify(value)}; expected ${list(keep)} (kept)${drop.length ? ` or ${list(drop)} (dropped)` : ""}`,
  );
}

function readId(record: Record<string, unknown>, index: number, idField: string | undefined, fail: Fail) {
  if (idField === undefined) return String(index);
  const id = record[idField];
  if (typeof id === "number" && Number.isFinite(id)) return String(id);
  if (typeof id === "string" && id !== "") return id;
  throw fail(
    idField,
    id === undefined ? "missing; every record needs an id" : "expected a non-empty string or a number",
  );
}

function readPrompt(
  record: Record<string, unknown>,
  prompt: z.infer<typeof PromptFieldSchema>,
  fail: Fail,
): Messages {
  const value = record[prompt.field];
  if (value === undefined)
    throw fail(prompt.field, "missing; expected a string or a list of {role, content} messages");
  if (typeof value === "string") {
    if (value.trim() === "") throw fail(prompt.field, "empty prompt; expected non-empty text");
    const user: Message = { role: "user", content: value };
    return prompt.system === undefined ? [user] : [{ role: "system", content: prompt.system }, user];
  }
  if (!Array.isArray(value))
    throw fail(prompt.field, "expected a string or a list of {role, content} messages");
  if (value.length === 0) throw fail(prompt.field, "empty message list; expected at least one message");
  return value.map((message: unknown, i): Message => {
    const at = `${prompt.field}[${i}]`;
    if (typeof message !== "object" || message === null || Array.isArray(message)) {
      throw fail(at, "expected a {role, content} message");
    }
    const { role, content } = message as Record<string, unknown>;
    const parsedRole = Role.safeParse(role);
    if (!parsedRole.success) {
      throw fail(`${at}.role`, `expected "system", "user" or "assistant", got ${JSON.stringify(role)}`);
    }
    if (typeof content !== "string") {
      throw fail(
        `${at}.content`,
        `expected a string, got ${content === undefined ? "nothing" : typeof content}`,
      );
    }
    return { role: parsedRole.data, content };
  });
}
