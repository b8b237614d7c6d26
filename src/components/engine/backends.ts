// Which Generator a recipe runs on: one engine (given and kept open, or started for it), a pool of
// engines, or inference servers. Kept apart from the Generator interface, which the pool and the
// server backend implement.
import { UserError } from "../errors.js";
import { withServers, type ServerHandle } from "../servers/generator.js";
import { Engine, withEngine, type EngineHandle } from "./client.js";
import { engineGenerator, type Generator } from "./generator.js";
import { wantsPool, withPool, type PoolOptions } from "./pool.js";

/** Where a recipe generates: an engine (given and kept open, or started for it), or servers. */
export type GeneratorHandle = EngineHandle | ServerHandle;

/**
 * A recipe runs on the engine it is given (kept open), or starts one for its own use, or a pool of
 * them when `pool` asks for several workers or devices, or on inference servers.
 */
export function withGenerator<T>(
  handle: GeneratorHandle,
  work: (generator: Generator) => Promise<T>,
  pool: PoolOptions = {},
): Promise<T> {
  if ("backend" in handle) {
    if (wantsPool(pool))
      throw new UserError(`--workers and --devices start local engines: not with --backend ${handle.backend}`);
    return withServers(handle, work);
  }
  if (!wantsPool(pool)) return withEngine(handle, (engine) => work(engineGenerator(engine)));
  if (handle instanceof Engine) throw new UserError("an engine given to a recipe runs alone: no --workers or --devices");
  return withPool(handle, pool, work);
}
