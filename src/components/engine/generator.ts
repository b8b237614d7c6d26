// Where generation runs, as recipes see it. analyze, generate and eval hand compute batches to a
// Generator and commit the results in input order. One engine is a Generator with one slot; a
// pool of engines (one per device or worker) and inference servers are Generators with more, so
// the recipes and the run folder they write do not change with scale.
import type { SteerRequest } from "../method/steering.js";
import type { Engine, LoadOptions, Sampling } from "./client.js";
import type { GeneratedSample, RoutingShardRequest } from "./protocol.js";
import type { Messages, ModelInfo } from "../domain.js";

export interface GenerateRequest {
  conversations: Messages[];
  /** One per conversation: a sample's tokens depend on its seed, never on its neighbours. */
  seeds: number[];
  sampling: Sampling;
  /** Where the routing goes; each shard takes the next samples, in order. Empty: not recorded. */
  shards: RoutingShardRequest[];
  steer?: SteerRequest;
  /** The samples' ids, for messages that name one (else their positions). */
  ids?: string[];
}

export interface Generator {
  /** Compute batches that may be in flight at once: recipes keep this many going. */
  readonly slots: number;
  /** Whether batches run on a GPU (it sets the default compute batch). */
  readonly cuda: boolean;
  /** What generates, for the output's config: engine versions and devices, or servers. */
  readonly description: Record<string, unknown>;
  /** What the progress line adds, e.g. the throughput of each server. */
  status?(): string;
  load(model: LoadOptions): Promise<ModelInfo>;
  /** Tokens of each conversation as the model's chat template renders it for generation (with the
   * generation prompt) or training (whole). */
  countTokens(conversations: Messages[], addGenerationPrompt: boolean, ids?: string[]): Promise<Int32Array>;
  /** Bytes one compute batch may take where the model sits; null: not ours to budget or unknown. */
  freeMemory(): Promise<number | null>;
  /** Add a trained expert delta to the loaded model. */
  applyDelta(delta: string): Promise<void>;
  generate(request: GenerateRequest): Promise<GeneratedSample[]>;
  /** Teacher-forced: record the routing of given conversations, assistant turns included. */
  replay(conversations: Messages[], shards: RoutingShardRequest[], ids?: string[]): Promise<GeneratedSample[]>;
}

/** One engine process: one compute batch at a time. */
export function engineGenerator(engine: Engine): Generator {
  return {
    slots: 1,
    cuda: engine.info.cuda,
    description: { engine: engine.info },
    load: (model) => engine.load(model),
    countTokens: (conversations, prompt, ids) => engine.countTokens(conversations, prompt, ids),
    freeMemory: () => engine.freeMemory(),
    applyDelta: async (delta) => void (await engine.applyDelta(delta)),
    generate: (r) => engine.generate(r.conversations, r.seeds, r.sampling, r.shards, r.steer, r.ids),
    replay: (conversations, shards, ids) => engine.replay(conversations, shards, ids),
  };
}

/** A progress line's extra text, followed by what the generator adds to it. */
export function withStatus(generator: Generator, extra?: string): string | undefined {
  const parts = [extra, generator.status?.()].filter((p) => p);
  return parts.length ? parts.join(" · ") : undefined;
}

/**
 * Runs `work` on every item with at most `slots` running at once, and hands each result to
 * `commit` in item order, so what is written never depends on which item finished first. Once
 * `signal` aborts no new item starts; running ones finish and are committed. On a failure, the
 * items before it are committed, the running ones are waited for, and the error is thrown.
 * Returns how many items were committed.
 */
export async function inOrder<T, R>(
  items: readonly T[],
  slots: number,
  work: (item: T) => Promise<R>,
  commit: (item: T, result: R) => void | Promise<void>,
  signal?: AbortSignal,
): Promise<number> {
  const started: Promise<R>[] = [];
  let committed = 0;
  let running = 0;
  let wake: () => void = () => undefined;
  // Results wait for their turn; more than 2 × slots waiting would only hold memory.
  const startMore = () => {
    while (running < slots && started.length < items.length && !signal?.aborted) {
      if (started.length - committed >= 2 * slots) break;
      running++;
      const result = work(items[started.length]!);
      started.push(result);
      void result.then(
        () => settle(),
        () => settle(),
      );
    }
  };
  const settle = () => {
    running--;
    startMore();
    wake();
  };
  startMore();
  try {
    while (committed < started.length) {
      const result = await started[committed]!;
      await commit(items[committed]!, result);
      committed++;
      startMore();
    }
  } catch (err) {
    while (running > 0) await new Promise<void>((resolve) => (wake = resolve));
    throw err;
  }
  return committed;
}

/**
 * Every generation pass (analyze, generate, eval): `items` in engine calls of `perCall` (a
 * compute batch), as many calls in flight as the generator takes, each call's result committed
 * in item order (inOrder). Returns how many calls were committed.
 */
export function inCalls<T, R>(
  generator: Pick<Generator, "slots">,
  items: readonly T[],
  perCall: number,
  work: (chunk: T[], start: number) => Promise<R>,
  commit: (chunk: T[], start: number, result: R) => void | Promise<void>,
  signal?: AbortSignal,
): Promise<number> {
  const starts = Array.from({ length: Math.ceil(items.length / perCall) }, (_, i) => i * perCall);
  const chunk = (start: number) => items.slice(start, start + perCall);
  return inOrder(
    starts,
    generator.slots,
    (start) => work(chunk(start), start),
    (start, result) => commit(chunk(start), start, result),
    signal,
  );
}
