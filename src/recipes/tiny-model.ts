// tiny-model: a small random MoE model folder, built by the engine from a seed (no network).
import { withEngine, type EngineHandle, type TinySize } from "../components/engine/client.js";
import type { TinyModelResult } from "../components/engine/protocol.js";

export interface TinyModelConfig {
  arch: string;
  out: string;
  seed: number;
  size?: TinySize;
  /** Texts to train the tokenizer on; the engine has a small built-in corpus. */
  corpus?: string[];
}

export function tinyModel(
  config: TinyModelConfig,
  options: { engine?: EngineHandle } = {},
): Promise<TinyModelResult> {
  const size = Object.fromEntries(Object.entries(config.size ?? {}).filter(([, v]) => v !== undefined));
  return withEngine(options.engine ?? {}, (e) =>
    e.buildTiny(config.arch, config.out, config.seed, size, config.corpus),
  );
}
