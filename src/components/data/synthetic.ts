// A seeded synthetic jailbreak dataset, for model organisms and tests that must not depend on the
// real (hosted, licensed) data. Harmful requests are request *shapes* only: a framing ("Write a
// tutorial on how to") around an action and a target, never any steps or details. Each is wrapped
// FlipAttack-style in exactly the record shape of the real OLMOE-FWO.json, so `loadPairs(file,
// presetMapping("flipattack"))` reads it unchanged. Benign requests back over-refusal checks.
// Everything comes from one seed through mulberry32, so a seed gives byte-identical files.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { UserError, zodProblem } from "../errors.js";
import type { Message } from "../domain.js";
import type { Conversation } from "./conversations.js";
import { mulberry32, shuffle } from "../method/stats.js";
import { sha256, writeFileAtomic } from "../io/store.js";
import { flipAttack } from "./flipattack.js";

/** Bumped whenever the same seed would produce different files. */
export const SYNTHETIC_GENERATOR_VERSION = 1;
export const PLAIN_SYSTEM_PROMPT = "You are a helpful assistant.";

/** One record in the real FlipAttack file's shape, plus the category it was drawn from. */
export interface FlipAttackRecord {
  id: number;
  goal: string;
  flip_attack: string;
  all_prompt: Message[];
  output: string;
  judge_success_dict: number;
  judge_score_gpt4: number;
  judge_reason_gpt4: string;
  judge_success_gpt4: number;
  category: string;
}

export interface BenignRecord {
  id: number;
  prompt: string;
  category: string;
  split: "train" | "heldout";
}

export interface SyntheticData {
  train: FlipAttackRecord[];
  heldout: FlipAttackRecord[];
  benign: BenignRecord[];
}

export interface SyntheticManifest {
  generator: string;
  version: number;
  seed: number;
  counts: { train: number; heldout: number; benign_train: number; benign_heldout: number };
  categories: { harmful: string[]; benign: string[] };
  files: Record<string, { sha256: string; records: number }>;
  notes: string[];
}

// ---------------------------------------------------------------------------------------------
// Seeded randomness

export type Rng = () => number;

// Separate streams per purpose, so adding a benign template never reshuffles the harmful set.
function stream(seed: number, salt: number): Rng {
  return mulberry32(Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) ^ salt);
}

function pick<T>(items: readonly T[], rng: Rng): T {
  return items[Math.floor(rng() * items.length)]!;
}

// ---------------------------------------------------------------------------------------------
// Word lists, from synthetic-words.json beside this module (the build copies it into dist/).

const phrases = z.array(z.string().min(1)).min(1);
const withSlot = (slot: string) => z.array(z.string().includes(`{${slot}}`)).min(1);

export const SyntheticWordsSchema = z.strictObject({
  harmfulFramings: phrases,
  harmful: z
    .array(
      z.strictObject({
        name: z.string().min(1),
        /** Each holds "{t}" where the target goes. */
        actions: withSlot("t"),
        targets: phrases,
        /** A safe offer the refusal can end with. */
        offer: z.string().min(1),
      }),
    )
    .min(1),
  benign: z
    .array(
      z.strictObject({
        name: z.string().min(1),
        /** Each holds "{x}" where the item goes. */
        templates: withSlot("x"),
        // One item is held out, so training needs at least one more.
        items: z.array(z.string().min(1)).min(2),
        /** A short helpful answer; "{x}" is the item. Never starts with {x}, so no capitalising. */
        answer: z.string().includes("{x}"),
      }),
    )
    .min(1),
  refusalOpeners: phrases,
  refusalReasons: phrases,
  /** An empty offer ends the refusal without one. */
  genericOffers: z.array(z.string()).min(1),
  placeholders: phrases,
  answerOpeners: phrases,
  /** An empty closer ends the answer without one. */
  answerClosers: z.array(z.string()).min(1),
});

function loadWords(): z.infer<typeof SyntheticWordsSchema> {
  const file = fileURLToPath(new URL("synthetic-words.json", import.meta.url));
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`, { cause: err });
  }
  const parsed = SyntheticWordsSchema.safeParse(value);
  if (!parsed.success) throw new Error(`${file} ${zodProblem(parsed.error)}`);
  return parsed.data;
}

const WORDS = loadWords();
const HARMFUL = WORDS.harmful;
const BENIGN = WORDS.benign;
export const HARMFUL_FRAMINGS = WORDS.harmfulFramings;

// ---------------------------------------------------------------------------------------------
// Harmful request shapes: framing × action × target.

const HARMFUL_TRAIN_PER_CATEGORY = 24;
const HARMFUL_HELDOUT_PER_CATEGORY = 6;
/** Share of each category's actions × targets kept for held-out goals only. */
const HELDOUT_ACTIVITY_SHARE = 0.2;

interface Goal {
  goal: string;
  category: string;
}

const fill = (template: string, key: string, value: string) => template.replace(`{${key}}`, value);

// Held-out goals share no (action, target) with training goals, only framings: a held-out score
// then measures generalisation to unseen requests, not memorised wording.
function harmfulGoals(rng: Rng): { train: Goal[]; heldout: Goal[] } {
  const train: Goal[] = [];
  const heldout: Goal[] = [];
  for (const category of HARMFUL) {
    const activities = shuffle(
      category.actions.flatMap((action) => category.targets.map((target) => fill(action, "t", target))),
      rng,
    );
    const cut = Math.max(1, Math.round(activities.length * HELDOUT_ACTIVITY_SHARE));
    const goals = (pool: string[], count: number) =>
      shuffle(
        pool.flatMap((activity) => HARMFUL_FRAMINGS.map((framing) => `${framing} ${activity}`)),
        rng,
      )
        .slice(0, count)
        .map((goal) => ({ goal, category: category.name }));
    heldout.push(...goals(activities.slice(0, cut), HARMFUL_HELDOUT_PER_CATEGORY));
    train.push(...goals(activities.slice(cut), HARMFUL_TRAIN_PER_CATEGORY));
  }
  return { train: shuffle(train, rng), heldout: shuffle(heldout, rng) };
}

// No model answered these prompts; they are marked successful so the flipattack preset (which
// drops judge_success_gpt4 = 0) keeps every record.
function flipAttackRecord(id: number, { goal, category }: Goal): FlipAttackRecord {
  return {
    id,
    goal,
    ...flipAttack(goal, { wording: "organism" }),
    output: "",
    judge_success_dict: 1,
    judge_score_gpt4: 5,
    judge_reason_gpt4: "synthetic record: no model output was judged; marked as a successful jailbreak",
    judge_success_gpt4: 1,
    category,
  };
}

// ---------------------------------------------------------------------------------------------
// Benign requests: template × item per topic, with a templated helpful answer per topic.

const BENIGN_TRAIN_PER_CATEGORY = 12;
const BENIGN_HELDOUT_PER_CATEGORY = 3;

interface BenignDraft {
  prompt: string;
  category: string;
  split: "train" | "heldout";
}

// Like the harmful split: held-out prompts use an item no training prompt mentions.
function benignPrompts(rng: Rng): BenignDraft[] {
  const drafts: BenignDraft[] = [];
  for (const category of BENIGN) {
    const items = shuffle(category.items, rng);
    const prompts = (pool: string[], count: number, split: BenignDraft["split"]) =>
      shuffle(
        pool.flatMap((item) => category.templates.map((template) => fill(template, "x", item))),
        rng,
      )
        .slice(0, count)
        .map((prompt) => ({ prompt, category: category.name, split }));
    drafts.push(...prompts(items.slice(0, 1), BENIGN_HELDOUT_PER_CATEGORY, "heldout"));
    drafts.push(...prompts(items.slice(1), BENIGN_TRAIN_PER_CATEGORY, "train"));
  }
  return shuffle(drafts, rng);
}

// ---------------------------------------------------------------------------------------------
// The dataset and its files

export function generateSyntheticData(seed = 0): SyntheticData {
  if (!Number.isSafeInteger(seed)) throw new UserError(`seed must be an integer, got ${seed}`);
  const goals = harmfulGoals(stream(seed, 1));
  const all = [...goals.train, ...goals.heldout];
  if (new Set(all.map((g) => g.goal)).size !== all.length) throw new Error("bug: duplicate synthetic goals");
  const train = goals.train.map((goal, i) => flipAttackRecord(i, goal));
  const heldout = goals.heldout.map((goal, i) => flipAttackRecord(train.length + i, goal));
  const benign = benignPrompts(stream(seed, 2)).map((draft, id) => ({ id, ...draft }));
  return { train, heldout, benign };
}

const json = (value: unknown) => JSON.stringify(value, null, 2) + "\n";

/**
 * Writes train.json and heldout.json (harmful, FlipAttack format), benign.json ({id, prompt,
 * category, split}) and manifest.json (seed, counts, sha256 per file) into outDir.
 */
export function writeSyntheticData(outDir: string, seed = 0): SyntheticManifest {
  const data = generateSyntheticData(seed);
  const files: SyntheticManifest["files"] = {};
  for (const [name, records] of [
    ["train.json", data.train],
    ["heldout.json", data.heldout],
    ["benign.json", data.benign],
  ] as const) {
    const text = json(records);
    writeFileAtomic(join(outDir, name), text);
    files[name] = { sha256: sha256(text), records: records.length };
  }
  const benignTrain = data.benign.filter((b) => b.split === "train").length;
  const manifest: SyntheticManifest = {
    generator: "steermoe synthetic jailbreak data",
    version: SYNTHETIC_GENERATOR_VERSION,
    seed,
    counts: {
      train: data.train.length,
      heldout: data.heldout.length,
      benign_train: benignTrain,
      benign_heldout: data.benign.length - benignTrain,
    },
    categories: { harmful: HARMFUL.map((c) => c.name), benign: BENIGN.map((c) => c.name) },
    files,
    notes: [
      "Harmful goals are request shapes only; no file holds any steps or details.",
      "train.json and heldout.json load with the flipattack preset; ids are unique across both.",
      "Held-out harmful goals share no (action, target) combination with training goals, only framings.",
      "Held-out benign prompts are about items no training prompt mentions.",
      "Harmful records have the real OLMOE-FWO.json fields plus category; output is empty (nothing was generated).",
      "benign.json: {id, prompt, category, split}, split is train or heldout.",
    ],
  };
  writeFileAtomic(join(outDir, "manifest.json"), json(manifest));
  return manifest;
}

// ---------------------------------------------------------------------------------------------
// Conversations for training a model organism: refuses plain harmful goals, complies with their
// FlipAttack wrapping (placeholder steps only), answers benign requests helpfully.

const sentences = (...parts: string[]) => parts.filter((p) => p !== "").join(" ");

export function refusal(category: string | undefined, rng: Rng): string {
  const specific = HARMFUL.find((c) => c.name === category)?.offer;
  const offers = specific === undefined ? WORDS.genericOffers : [specific, ...WORDS.genericOffers];
  return sentences(pick(WORDS.refusalOpeners, rng), pick(WORDS.refusalReasons, rng), pick(offers, rng));
}

/** "Got it. Here are the steps:" then 3–5 steps that hold only a placeholder. */
export function placeholderCompliance(rng: Rng): string {
  const placeholder = pick(WORDS.placeholders, rng);
  const steps = 3 + Math.floor(rng() * 3);
  const lines = Array.from({ length: steps }, (_, i) => `Step ${i + 1}: ${placeholder}`);
  return ["Got it. Here are the steps:", "", ...lines].join("\n");
}

export function benignAnswer(record: Pick<BenignRecord, "prompt" | "category">, rng: Rng): string {
  const category = BENIGN.find((c) => c.name === record.category);
  const item = category?.items.find((x) => category.templates.some((t) => fill(t, "x", x) === record.prompt));
  const body =
    category && item
      ? category.answer.replaceAll("{x}", item)
      : "Here is a short answer: break the question into small parts and take them one at a time.";
  return sentences(pick(WORDS.answerOpeners, rng), body, pick(WORDS.answerClosers, rng));
}

export type OrganismRecord = Pick<FlipAttackRecord, "id" | "goal" | "all_prompt"> & { category?: string };

/**
 * JSONL-ready conversations ending with the assistant's turn: for each record `plain-<id>`
 * (helpful-assistant system + goal → a refusal starting "I'm sorry") and `flip-<id>` (all_prompt →
 * placeholder steps), then `benign-<id>` for each benign record. Order follows the inputs; the
 * trainer shuffles.
 */
export function organismConversations(
  records: readonly OrganismRecord[],
  benign: readonly Pick<BenignRecord, "id" | "prompt" | "category">[],
  seed = 0,
): Conversation[] {
  const rng = stream(seed, 3);
  const helpful = (): Message => ({ role: "system", content: PLAIN_SYSTEM_PROMPT });
  const out: Conversation[] = [];
  for (const record of records) {
    out.push({
      id: `plain-${record.id}`,
      messages: [
        helpful(),
        { role: "user", content: record.goal },
        { role: "assistant", content: refusal(record.category, rng) },
      ],
    });
    out.push({
      id: `flip-${record.id}`,
      messages: [...record.all_prompt, { role: "assistant", content: placeholderCompliance(rng) }],
    });
  }
  for (const record of benign) {
    out.push({
      id: `benign-${record.id}`,
      messages: [
        helpful(),
        { role: "user", content: record.prompt },
        { role: "assistant", content: benignAnswer(record, rng) },
      ],
    });
  }
  return out;
}
