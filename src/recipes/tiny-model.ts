// tiny-model: a small random MoE model folder, built by the engine from a seed (no network).
import { withEngine, type EngineHandle, type TinySize } from "../components/engine/client.js";
import type { TinyModelResult } from "../components/engine/protocol.js";

/** The one dense type the engine builds: tests use it to check that models without experts are
 * refused. The CLI does not offer it. */
export const DENSE_TEST_ARCH = "llama";

export interface TinyModelConfig {
  arch: string;
  out: string;
  seed: number;
  size?: TinySize;
  /** Texts to train the tokenizer on; the engine has a small built-in corpus. */
  corpus?: string[];
  /** The routing of the released checkpoint of this model type (docs/support.md names it). */
  released?: boolean;
}

export function tinyModel(
  config: TinyModelConfig,
  options: { engine?: EngineHandle } = {},
): Promise<TinyModelResult> {
  const size = Object.fromEntries(Object.entries(config.size ?? {}).filter(([, v]) => v !== undefined));
  return withEngine(options.engine ?? {}, (e) =>
    e.buildTiny(config.arch, config.out, config.seed, {
      size,
      corpus: config.corpus,
      released: config.released,
    }),
  );
}
