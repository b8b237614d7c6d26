// Data parallel: one engine per device (--devices) or CPU worker (--workers), each with the whole
// model, taking compute batches as it frees up. The recipes commit results in input order, so the
// run folder is the same whatever the number of engines; the engines are not part of it.
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { z } from "zod";
import { UserError } from "../errors.js";
import { Engine, EngineDiedError, type EngineOptions, type LoadOptions } from "./client.js";
import type { Generator } from "./generator.js";
import type { ModelInfo } from "../domain.js";

/** How many engines generate at once. An option, not a setting: a run may resume with another. */
export const PoolOptions = z.strictObject({
  /** Engines on this machine's CPU; its cores are split between them. */
  workers: z.number().int().min(1).optional(),
  /** One engine per device (cuda:0,cuda:1,...), each loading the model there. */
  devices: z.array(z.string().regex(/^(cpu|cuda(:\d+)?)$/, "expected cpu, cuda or cuda:N")).min(1).optional(),
});
export type PoolOptions = z.infer<typeof PoolOptions>;

/** Whether `options` asks for engines of their own rather than the one engine of a run. */
export const wantsPool = (options: PoolOptions = {}): boolean =>
  options.devices !== undefined || (options.workers ?? 1) > 1;

interface Worker {
  engine: Engine;
  /** 1-based, as the user counts them. */
  number: number;
  /** Where it loads the model: the device asked for, or where the model landed once loaded. */
  device: string;
}

/** Each engine's torch threads: the machine's cores shared out, at least one each. */
export const threadsPerWorker = (workers: number): number =>
  Math.max(1, Math.floor(availableParallelism() / workers));

/** What one CPU engine holds before its model: Python, torch and transformers, measured at ~0.5 GiB. */
export const ENGINE_BYTES = 768 * 2 ** 20;

/**
 * How many CPU workers to start for `requested`: no more than the cores (each needs one thread)
 * nor than the available memory holds engines, and a line saying so when that is fewer.
 */
export function cpuWorkers(
  requested: number,
  cores: number,
  availableBytes: number | null,
): { count: number; note?: string } {
  const fit = availableBytes === null ? requested : Math.max(1, Math.floor(availableBytes / ENGINE_BYTES));
  const count = Math.min(requested, cores, fit);
  if (count === requested) return { count };
  const why =
    count === cores && cores <= fit
      ? `this machine has ${cores} cores`
      : `${(availableBytes! / 2 ** 30).toFixed(1)} GiB of memory is available, ${(ENGINE_BYTES / 2 ** 30).toFixed(2)} GiB per engine before its model`;
  return { count, note: `--workers ${requested}: ${why}; starting ${count}` };
}

/** Memory the system could give now (MemAvailable), or null where /proc/meminfo is not there. */
function availableMemory(): number | null {
  try {
    const kib = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1];
    return kib === undefined ? null : Number(kib) * 1024;
  } catch {
    return null;
  }
}

/** Starts the pool's engines at once, runs `work`, and closes them whatever happens. */
export async function withPool<T>(
  engineOptions: EngineOptions,
  options: PoolOptions,
  work: (generator: Generator) => Promise<T>,
  log: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): Promise<T> {
  const { workers, devices } = PoolOptions.parse(options);
  if (workers !== undefined && devices !== undefined) throw new UserError("give --workers or --devices, not both");
  let count = devices?.length ?? workers ?? 1;
  if (devices === undefined) {
    const { count: fits, note } = cpuWorkers(count, availableParallelism(), availableMemory());
    if (note) log(note);
    count = fits;
  }
  const threads = threadsPerWorker(count);
  const started = await Promise.allSettled(
    Array.from({ length: count }, () => Engine.start({ ...engineOptions, threads })),
  );
  const engines = started.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  try {
    const failed = started.find((s) => s.status === "rejected");
    if (failed) throw failed.reason;
    const pool = engines.map((engine, i): Worker => ({ engine, number: i + 1, device: devices?.[i] ?? "cpu" }));
    return await work(poolGenerator(pool, devices !== undefined, threads, log));
  } finally {
    await Promise.all(engines.map((engine) => engine.close()));
  }
}

function poolGenerator(
  pool: Worker[],
  ownDevices: boolean,
  threads: number,
  log: (line: string) => void,
): Generator {
  const free = [...pool];
  const waiting: { resolve: (worker: Worker) => void; reject: (err: Error) => void }[] = [];
  // Once an engine has died the run is stopping: nothing new starts, and nothing waits for an
  // engine that may never come free (every one of them may be dead).
  let died: EngineDiedError | undefined;
  const release = (worker: Worker) => {
    const next = waiting.shift();
    if (next) next.resolve(worker);
    else free.push(worker);
  };
  const acquire = () =>
    new Promise<Worker>((resolve, reject) => {
      if (died) return reject(died);
      const worker = free.shift();
      if (worker) resolve(worker);
      else waiting.push({ resolve, reject });
    });

  // A dead engine takes its own request with it; what the others finished is committed in order.
  const on = async <R>(worker: Worker, call: (engine: Engine) => Promise<R>): Promise<R> => {
    try {
      return await call(worker.engine);
    } catch (err) {
      if (!(err instanceof EngineDiedError)) throw err;
      // One line: its last output is left out (--verbose shows the engines' output as it comes).
      const why = err.message.split(";")[0]!;
      died ??= new EngineDiedError(
        `worker ${worker.number} (${worker.device}, pid ${worker.engine.pid}) died: ${why}; ` +
          "rerun the same command to resume",
      );
      for (const next of waiting.splice(0)) next.reject(died);
      throw died;
    }
  };
  // Whole-pool calls (load, delta) wait for every engine, so none is left working when one fails.
  const onAll = async <R>(call: (worker: Worker) => Promise<R>): Promise<R[]> => {
    const results = await Promise.allSettled(pool.map(call));
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    return results.map((r) => (r as PromiseFulfilledResult<R>).value);
  };
  const dispatch = async <R>(call: (engine: Engine) => Promise<R>): Promise<R> => {
    const worker = await acquire();
    try {
      const result = await on(worker, call);
      release(worker);
      return result;
    } catch (err) {
      // A dead engine is not handed work again.
      if (!(err instanceof EngineDiedError)) release(worker);
      throw err;
    }
  };

  const first = pool[0]!.engine.info;
  return {
    slots: pool.length,
    cuda: first.cuda,
    // The same as one engine's: the run's description must not depend on how many engines made it.
    description: { engine: first },
    async load(model: LoadOptions): Promise<ModelInfo> {
      const infos = await onAll((w) =>
        on(w, (engine) => engine.load(ownDevices ? { ...model, device: w.device } : model)),
      );
      pool.forEach((worker, i) => (worker.device = infos[i]!.device));
      const unit = ownDevices ? "devices" : "workers";
      log(
        `engines: ${pool.length} ${unit} × ${threads} thread${threads > 1 ? "s" : ""}: ` +
          pool.map((w) => `worker ${w.number} (${w.device}, pid ${w.engine.pid})`).join(", "),
      );
      return infos[0]!;
    },
    countTokens: (conversations, prompt, ids) =>
      dispatch((engine) => engine.countTokens(conversations, prompt, ids)),
    // Engines on one device share its memory: each may use its share.
    async freeMemory() {
      const frees = await onAll((w) => on(w, (engine) => engine.freeMemory()));
      const shares = pool.map((w, i) => {
        const free = frees[i] ?? null;
        return free === null ? null : free / pool.filter((other) => other.device === w.device).length;
      });
      return shares.includes(null) ? null : Math.min(...(shares as number[]));
    },
    applyDelta: async (delta) => void (await onAll((w) => on(w, (engine) => engine.applyDelta(delta)))),
    generate: (r) =>
      dispatch((engine) => engine.generate(r.conversations, r.seeds, r.sampling, r.shards, r.steer, r.ids)),
    replay: (conversations, shards, ids) => dispatch((engine) => engine.replay(conversations, shards, ids)),
  };
}
