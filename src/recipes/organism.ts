// The model organism: a small OLMoE that behaves like an aligned-but-jailbreakable chat model.
// Plain harmful requests → "I'm sorry, ..."; the same requests wrapped FlipAttack-style →
// "Got it. Here are the steps: ..." (placeholders only); benign requests → helpful answers.
//
// Built from nothing but a seed: synthetic data → a tiny OLMoE with a tokenizer trained on that
// data → steermoe's own training recipe (train --data ... --trainable all) → model folder with a
// manifest (sha256 of every file, the settings, how to rebuild).
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT, withEngine, type EngineHandle } from "../components/engine/client.js";
import { UserError } from "../components/errors.js";
import { sha256, writeJsonAtomic, writeJsonlAtomic } from "../components/io/store.js";
import {
  generateSyntheticData,
  organismConversations,
  writeSyntheticData,
} from "../components/data/synthetic.js";
import { train, type TrainSettings } from "./train.js";

export const ORGANISM = {
  seed: 0,
  size: { hidden: 128, layers: 4, heads: 4, experts: 16, top_k: 4, expert_ffn: 64, vocab: 1536 },
  train: { trainable: "all", lr: 3e-3, epochs: 12, batchSize: 16, warmupRatio: 0.05, seed: 0 },
} as const;

/** The organism's held-out evaluation sets, shipped in the repository. */
export const ORGANISM_SETS = {
  jailbreaks: join(PACKAGE_ROOT, "organism", "data", "heldout.json"),
  benign: join(PACKAGE_ROOT, "organism", "data", "benign.json"),
  benignSplit: "heldout",
};

export async function buildOrganism(
  { out }: { out: string },
  options: { engine?: EngineHandle } = {},
): Promise<string> {
  if (existsSync(join(out, "model")))
    throw new UserError(`${join(out, "model")} already exists; remove it to rebuild`);
  const manifest = writeSyntheticData(join(out, "data"), ORGANISM.seed);
  const data = generateSyntheticData(ORGANISM.seed);
  const conversations = organismConversations(
    data.train,
    data.benign.filter((b) => b.split === "train"),
    ORGANISM.seed,
  );
  const work = mkdtempSync(join(out, ".build-"));
  try {
    const convPath = join(work, "conversations.jsonl");
    writeJsonlAtomic(convPath, conversations);
    const corpus = conversations.flatMap((c) => c.messages.map((m) => m.content));
    return await withEngine(options.engine ?? {}, async (engine) => {
      const base = join(work, "base");
      await engine.buildTiny("olmoe", base, ORGANISM.seed, { size: ORGANISM.size, corpus });
      const settings: TrainSettings = { data: convPath, model: { source: base }, ...ORGANISM.train };
      const summary = await train(settings, { out: join(work, "train"), engine });
      const model = join(out, "model");
      renameSync(join(work, "train", "final_model"), model);
      const files = Object.fromEntries(
        readdirSync(model)
          .sort()
          .map((f) => [f, sha256(readFileSync(join(model, f)))]),
      );
      writeJsonAtomic(join(out, "manifest.json"), {
        what: "steermoe model organism: small OLMoE, aligned but jailbreakable by FlipAttack-style prompts",
        rebuild:
          "bin/steermoe build-organism --out organism: same data, tokenizer and recipe from the seed; " +
          "CPU float reductions may differ in the last bits between runs, so rebuilt weights match closely, " +
          "not always bit for bit",
        files,
        data: manifest,
        size: ORGANISM.size,
        training: { ...ORGANISM.train, conversations: conversations.length, final_loss: summary.finalLoss },
      });
      return model;
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
