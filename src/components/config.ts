// Settings shared by several recipes. Each schema is also the type: flags and config files are
// parsed here once, and recipes trust what they get.
import { z } from "zod";
import { UserError, zodProblem } from "./errors.js";

export const ModelConfig = z.strictObject({
  source: z.string().min(1),
  dtype: z.enum(["auto", "bf16", "fp16", "fp32"]).default("auto"),
  device: z
    .string()
    .regex(/^(auto|cpu|cuda(:\d+)?)$/, "expected auto, cpu, cuda or cuda:N")
    .default("auto"),
  /** Spread one model over every GPU, whole decoder layers per device (accelerate's placement). */
  deviceMap: z.enum(["auto", "balanced"]).optional(),
  trustRemoteCode: z.boolean().default(false),
  /** Deterministic algorithms only (torch.use_deterministic_algorithms), for the same bytes on a
   * rerun on the same GPU (docs/scale.md, Reproducibility). */
  deterministic: z.boolean().default(false),
});
export type ModelConfig = z.infer<typeof ModelConfig>;

export const SamplingConfig = z.strictObject({
  maxNewTokens: z.number().int().min(1).default(128),
  /** Prompts longer than this (chat template included) are refused, or skipped where asked. */
  maxPromptTokens: z.number().int().min(1).optional(),
  /** 0 means greedy decoding. */
  temperature: z.number().min(0).default(1.0),
  topP: z.number().gt(0).max(1).default(1.0),
  /** Sample i draws from its own generator seeded with seed + i. */
  seed: z.number().int().min(0).default(42),
});
export type SamplingConfig = z.infer<typeof SamplingConfig>;

/**
 * The seed of the sample at `position` in its run (an analysis plan's order, an input file's, an
 * eval's list): it depends on nothing else, so compute batches, workers, servers and resumes
 * leave every draw unchanged.
 */
export const sampleSeed = (sampling: Pick<SamplingConfig, "seed">, position: number) =>
  sampling.seed + position;

/** Sequences the engine runs at once: independent of any analysis batch. */
export const ComputeBatch = z.union([z.literal("auto"), z.number().int().min(1)]).default("auto");

const UNITS: Record<string, number> = { "": 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12 };
for (const [i, unit] of ["kib", "mib", "gib", "tib"].entries()) UNITS[unit] = 1024 ** (i + 1);

/** A memory budget as text: bytes, or a number with a unit ("512MB", "8GiB"). */
export const MemoryText = z
  .string()
  .regex(/^\s*\d+(\.\d+)?\s*([kmgt]i?)?b?\s*$/i, "expected bytes, or a size like 512MB or 8GiB")
  .transform((text) => {
    const [, value, unit] = /^\s*([\d.]+)\s*([a-z]*)\s*$/i.exec(text)!;
    const scale = UNITS[unit!.toLowerCase()] ?? UNITS[`${unit!.toLowerCase()}b`]!;
    return Math.round(Number(value) * scale);
  })
  .pipe(z.number().int().min(1, "must be at least one byte"));

/** A memory budget in bytes: a number, or text with a unit. */
export const MemorySize = z.union([z.number().int().min(1), MemoryText]);

/** "auto": 64 on every device. On CPU too, a step of 64 sequences reads each expert's weights
 * once for four times the tokens of 16 (docs/benchmarks.md); fitComputeBatch shrinks it to memory. */
export function computeBatchSize(setting: "auto" | number): number {
  return setting === "auto" ? 64 : setting;
}

/** Settings parsed at the boundary: a failure is one line naming the recipe and the field. */
export function parseSettings<S extends z.ZodType>(schema: S, input: unknown, recipe: string): z.infer<S> {
  const parsed = schema.safeParse(input);
  if (!parsed.success) throw new UserError(`${recipe} settings ${zodProblem(parsed.error)}`);
  return parsed.data;
}
