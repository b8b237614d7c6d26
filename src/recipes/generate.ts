// generate: batched chat generation (or replay of given responses) that records, for every
// prompt and response token, the experts each MoE layer routed it to.
//
// out/
//   meta.json                      settings, model, engine versions, counts, complete or not
//   samples.jsonl                  id, messages, token ids, text, finish reason, routing location
//   routing/shard-NNNNN.safetensors  one per compute batch, written by the engine (docs/run-folder.md)
import { join } from "node:path";
import { z } from "zod";
import {
  ComputeBatch,
  computeBatchSize,
  MemorySize,
  ModelConfig,
  sampleSeed,
  SamplingConfig,
} from "../components/config.js";
import { planGeneration } from "../components/engine/prompt-limits.js";
import { readConversations } from "../components/data/conversations.js";
import { ModelInfo } from "../components/domain.js";
import { withGenerator, type GeneratorHandle } from "../components/engine/backends.js";
import { inCalls, withStatus } from "../components/engine/generator.js";
import type { PoolOptions } from "../components/engine/pool.js";
import { progress } from "../components/progress.js";
import { prepareOutDir } from "../components/io/run.js";
import { Steering, steerRequest } from "../components/method/steering.js";
import { UserError } from "../components/errors.js";
import { TextEncoding, writeJsonAtomic, writeJsonlAtomic } from "../components/io/store.js";
import type { GeneratedRow, GenerateMeta } from "../components/io/run-files.js";

export const GenerateConfig = z.strictObject({
  model: ModelConfig,
  input: z.string().min(1),
  out: z.string().min(1),
  sampling: SamplingConfig.prefault({}),
  computeBatch: ComputeBatch,
  /** Memory budget in bytes for one compute batch (default: half the free memory). */
  maxMemory: MemorySize.optional(),
  /** Leave out conversations over the length limit (listed in meta.json) instead of refusing. */
  skipLong: z.boolean().default(false),
  /** Conversations end with the assistant response: record its routing without generating. */
  replay: z.boolean().default(false),
  /** How the data files' bytes are text (docs/method.md: data files): invalid UTF-8 is refused unless asked. */
  encoding: TextEncoding.default("utf8"),
  /** Router-logit biases while generating (experts switched off, forced on, or graded). */
  steer: Steering.optional(),
  overwrite: z.boolean().default(false),
});
export type GenerateConfig = z.input<typeof GenerateConfig>;

export interface GenerateSummary {
  out: string;
  samples: number;
  total: number;
  /** Conversations left out by --skip-long. */
  skippedLong: number;
  generatedTokens: number;
  seconds: number;
  complete: boolean;
}

export async function generate(
  input: GenerateConfig,
  options: { engine?: GeneratorHandle; pool?: PoolOptions; signal?: AbortSignal } = {},
): Promise<GenerateSummary> {
  const config = GenerateConfig.parse(input);
  if (config.steer && config.replay) throw new UserError("--steer works with generation, not with --replay");
  const all = readConversations(config.input, config.replay, config.encoding);
  prepareOutDir(config.out, config.overwrite, "meta.json");

  return withGenerator(
    options.engine ?? {},
    async (generator) => {
      const model = await generator.load(config.model);
      const steer = config.steer && steerRequest(config.steer, model, "--steer");
      // A replayed conversation is measured whole: its response is part of the one forward pass.
      const { keep, fit } = await planGeneration(
        generator,
        model,
        all.map((c) => ({
          messages: c.messages,
          where: `${config.input} record id ${c.id} field messages`,
          id: c.id,
        })),
        {
          ...config.sampling,
          maxNewTokens: config.replay ? 0 : config.sampling.maxNewTokens,
          skipLong: config.skipLong,
        },
        { requested: computeBatchSize(config.computeBatch), maxMemory: config.maxMemory },
      );
      const conversations = all.filter((_, i) => keep[i]);
      const skippedLong = all.filter((_, i) => !keep[i]).map((c) => c.id);
      if (conversations.length === 0) {
        throw new UserError(
          `${config.input}: every conversation is over the length limit; nothing to generate`,
        );
      }
      const batchSize = fit.size;
      const rows: GeneratedRow[] = [];
      const started = Date.now();
      let generatedTokens = 0;
      const bar = progress(config.replay ? "replay" : "generate", conversations.length, "samples");
      const meta = (complete: boolean): GenerateMeta => ({
        format: "steermoe.generate.v1",
        complete,
        samples: rows.length,
        total: conversations.length,
        ...(config.skipLong && { skipped_long: skippedLong }),
        config,
        compute_batch_size: batchSize,
        model: z.encode(ModelInfo, model),
        ...generator.description,
      });
      const shardOf = (start: number) =>
        `routing/shard-${String(start / batchSize).padStart(5, "0")}.safetensors`;

      await inCalls(
        generator,
        conversations,
        batchSize,
        (chunk, start) => {
          const messages = chunk.map((c) => c.messages);
          const shards = [{ path: join(config.out, shardOf(start)), sampleIds: chunk.map((c) => c.id) }];
          const ids = chunk.map((c) => c.id);
          return config.replay
            ? generator.replay(messages, shards, ids)
            : generator.generate({
                conversations: messages,
                seeds: chunk.map((_, i) => sampleSeed(config.sampling, start + i)),
                sampling: config.sampling,
                shards,
                steer,
                ids,
              });
        },
        (chunk, start, samples) => {
          samples.forEach((s, i) => {
            const conversation = chunk[i]!;
            generatedTokens += s.generatedIds.data.length;
            rows.push({
              id: conversation.id,
              messages: conversation.messages,
              prompt_token_ids: Array.from(s.promptIds.data as Int32Array),
              generated_token_ids: Array.from(s.generatedIds.data as Int32Array),
              text: s.text,
              finish_reason: s.finishReason,
              routing: { shard: shardOf(start), index: i },
            });
          });
          // Rewritten whole after every shard: what is on disk is always consistent.
          writeJsonlAtomic(join(config.out, "samples.jsonl"), rows);
          writeJsonAtomic(join(config.out, "meta.json"), meta(false));
          const seconds = (Date.now() - started) / 1000;
          const rate = `${(generatedTokens / seconds).toFixed(1)} tok/s`;
          bar.update(rows.length, withStatus(generator, fit.note ? `${rate} · ${fit.note}` : rate));
        },
        options.signal,
      );
      bar.finish();
      const complete = rows.length === conversations.length;
      writeJsonAtomic(join(config.out, "meta.json"), meta(complete));
      return {
        out: config.out,
        samples: rows.length,
        total: conversations.length,
        skippedLong: skippedLong.length,
        generatedTokens,
        seconds: (Date.now() - started) / 1000,
        complete,
      };
    },
    options.pool,
  );
}
