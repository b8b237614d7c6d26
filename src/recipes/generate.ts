// generate: batched chat generation (or replay of given responses) that records, for every
// prompt and response token, the experts each MoE layer routed it to.
//
// out/
//   meta.json                      settings, model, engine versions, counts, complete or not
//   samples.jsonl                  id, messages, token ids, text, finish reason, routing location
//   routing/shard-NNNNN.safetensors  one per compute batch, written by the engine (README)
import { join } from "node:path";
import { z } from "zod";
import { ComputeBatch, computeBatchSize, ModelConfig, SamplingConfig } from "../components/config.js";
import { readConversations } from "../components/data/conversations.js";
import { withEngine, type EngineHandle } from "../components/engine/client.js";
import { progress } from "../components/progress.js";
import { prepareOutDir } from "../components/io/run.js";
import { Steering, steerRequest } from "../components/method/steering.js";
import { UserError } from "../components/errors.js";
import { writeJsonAtomic, writeJsonlAtomic } from "../components/io/store.js";
import type { GeneratedRow } from "../components/io/run-files.js";

export const GenerateConfig = z.strictObject({
  model: ModelConfig,
  input: z.string().min(1),
  out: z.string().min(1),
  sampling: SamplingConfig.prefault({}),
  computeBatch: ComputeBatch,
  /** Conversations end with the assistant response: record its routing without generating. */
  replay: z.boolean().default(false),
  /** Router-logit biases while generating (experts switched off, forced on, or graded). */
  steer: Steering.optional(),
  overwrite: z.boolean().default(false),
});
export type GenerateConfig = z.input<typeof GenerateConfig>;

export interface GenerateSummary {
  out: string;
  samples: number;
  total: number;
  generatedTokens: number;
  seconds: number;
  complete: boolean;
}

export async function generate(
  input: GenerateConfig,
  options: { engine?: EngineHandle; signal?: AbortSignal } = {},
): Promise<GenerateSummary> {
  const config = GenerateConfig.parse(input);
  const conversations = readConversations(config.input, config.replay);
  prepareOutDir(config.out, config.overwrite, "meta.json");

  return withEngine(options.engine ?? {}, async (engine) => {
    const model = await engine.load(config.model);
    if (config.steer && config.replay)
      throw new UserError("--steer works with generation, not with --replay");
    const steer = config.steer && steerRequest(config.steer, model, "--steer");
    const batchSize = computeBatchSize(config.computeBatch, engine.info.cuda);
    const rows: GeneratedRow[] = [];
    const started = Date.now();
    let generatedTokens = 0;
    const bar = progress(config.replay ? "replay" : "generate", conversations.length, "samples");
    const meta = (complete: boolean) => ({
      format: "steermoe.generate.v1",
      complete,
      samples: rows.length,
      total: conversations.length,
      config,
      computeBatchSize: batchSize,
      model,
      engine: engine.info,
    });

    for (let start = 0; start < conversations.length && !options.signal?.aborted; start += batchSize) {
      const chunk = conversations.slice(start, start + batchSize);
      const messages = chunk.map((c) => c.messages);
      const shard = `routing/shard-${String(start / batchSize).padStart(5, "0")}.safetensors`;
      const shards = [{ path: join(config.out, shard), sample_ids: chunk.map((c) => c.id) }];
      const samples = config.replay
        ? await engine.replay(
            messages,
            shards,
            chunk.map((c) => c.id),
          )
        : await engine.generate(
            messages,
            chunk.map((_, i) => config.sampling.seed + start + i),
            config.sampling,
            shards,
            steer,
            chunk.map((c) => c.id),
          );
      samples.forEach((s, i) => {
        generatedTokens += s.generated_ids.data.length;
        rows.push({
          id: chunk[i]!.id,
          messages: chunk[i]!.messages,
          prompt_token_ids: Array.from(s.prompt_ids.data as Int32Array),
          generated_token_ids: Array.from(s.generated_ids.data as Int32Array),
          text: s.text,
          finish_reason: s.finish_reason,
          routing: { shard, index: i },
        });
      });
      // Rewritten whole after every shard: what is on disk is always consistent.
      writeJsonlAtomic(join(config.out, "samples.jsonl"), rows);
      writeJsonAtomic(join(config.out, "meta.json"), meta(false));
      const seconds = (Date.now() - started) / 1000;
      bar.update(rows.length, `${(generatedTokens / seconds).toFixed(1)} tok/s`);
    }
    bar.finish();
    const complete = rows.length === conversations.length;
    writeJsonAtomic(join(config.out, "meta.json"), meta(complete));
    return {
      out: config.out,
      samples: rows.length,
      total: conversations.length,
      generatedTokens,
      seconds: (Date.now() - started) / 1000,
      complete,
    };
  });
}
