// The expert delta that train writes: a safetensors file holding only the trained experts' weights,
// one tensor per expert and projection, named layers.L.experts.E.PROJ. Its format is defined and
// checked here: the file on its own before any model loads, then against the model the engine has
// loaded, before the engine applies it.
import { z } from "zod";
import { UserError, zodProblem } from "../errors.js";
import type { ModelInfo } from "../domain.js";
import { readSafetensorsHeader } from "../io/safetensors.js";

export const DELTA_FORMAT = "steermoe.expert_delta.v1";

/** What a delta says of itself, in its safetensors header; expert_delta.json repeats it. */
export const DeltaMetadata = z.object({
  format: z.literal(DELTA_FORMAT),
  base_model: z.string(),
  model_type: z.string(),
});
export type DeltaMetadata = z.infer<typeof DeltaMetadata>;
const TENSOR = /^layers\.(\d+)\.experts\.(\d+)\.(gate_up_proj|down_proj|gate_up_proj_bias|down_proj_bias)$/;

const FLOAT_DTYPES = ["F64", "F32", "F16", "BF16"];

/** A delta's header, checked on its own: what it says of itself, and the expert of each tensor. */
export interface DeltaHeader {
  path: string;
  about: DeltaMetadata;
  tensors: { name: string; layer: number; expert: number }[];
}

/**
 * One-line errors for a file that is not a steermoe delta of floating-point expert weights; read
 * before any model is loaded.
 */
export function readDelta(path: string): DeltaHeader {
  const { __metadata__: metadata, ...tensors } = readSafetensorsHeader(path).header;
  const about = DeltaMetadata.safeParse(metadata ?? {});
  if (!about.success) {
    const format = (metadata as { format?: unknown } | undefined)?.format;
    throw new UserError(
      format === DELTA_FORMAT
        ? `${path}: a damaged steermoe expert delta: its header metadata ${zodProblem(about.error)}`
        : `${path}: not a steermoe expert delta (format ${String(format)}, expected ${DELTA_FORMAT})`,
    );
  }
  return {
    path,
    about: about.data,
    tensors: Object.entries(tensors).map(([name, tensor]) => {
      const [, layer, expert] = TENSOR.exec(name) ?? [];
      if (layer === undefined) throw new UserError(`${path}: unexpected tensor '${name}'`);
      // Weights are floating point: integers would be cast into weights without a word.
      const dtype = (tensor as { dtype?: unknown }).dtype;
      if (!FLOAT_DTYPES.includes(String(dtype))) {
        throw new UserError(
          `${path}: tensor '${name}' is ${String(dtype)}; a delta holds floating-point weights`,
        );
      }
      return { name, layer: Number(layer), expert: Number(expert) };
    }),
  };
}

/** One-line errors for a delta made for another model: another type, or experts `model` lacks. */
export function checkDeltaFits(delta: DeltaHeader, model: ModelInfo): void {
  const { path, about } = delta;
  if (about.model_type !== model.modelType) {
    throw new UserError(
      `${path}: a delta of a ${about.model_type} model, but ${model.source} is ${model.modelType}; apply it to the model it was trained from`,
    );
  }
  for (const { name, layer, expert } of delta.tensors) {
    if (!model.moeLayers.includes(layer) || expert >= model.numExperts) {
      throw new UserError(
        `${path}: tensor '${name}' names layer ${layer} expert ${expert}, which ${model.source} does not have ` +
          `(MoE layers ${model.moeLayers.join(", ")}, experts 0..${model.numExperts - 1})`,
      );
    }
  }
}
