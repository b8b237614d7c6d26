// inspect: load a model and describe its Mixture-of-Experts layout.
import { z } from "zod";
import { ModelConfig } from "../components/config.js";
import { withEngine, type EngineHandle, type LoadOptions } from "../components/engine/client.js";
import type { ReadyInfo } from "../components/engine/protocol.js";
import type { ModelInfo } from "../components/domain.js";

export const InspectSettings = z.strictObject({ model: ModelConfig });

export interface InspectResult {
  model: ModelInfo;
  /** The engine's versions and devices. */
  engine: ReadyInfo;
}

export function inspect(
  settings: { model: LoadOptions },
  options: { engine?: EngineHandle } = {},
): Promise<InspectResult> {
  return withEngine(options.engine ?? {}, async (e) => ({
    model: await e.load(settings.model),
    engine: e.info,
  }));
}

const count = (n: number): string =>
  n >= 1e9
    ? `${(n / 1e9).toFixed(2)}B`
    : n >= 1e6
      ? `${(n / 1e6).toFixed(2)}M`
      : n >= 1e3
        ? `${(n / 1e3).toFixed(1)}K`
        : `${n}`;

/** "none", or each distinct set of shared-expert modules with the MoE layers that have it. */
function sharedExperts(shared: Record<string, string[]>): string {
  const byModules = new Map<string, string[]>();
  for (const [layer, modules] of Object.entries(shared)) {
    const key = modules.join(" + ");
    byModules.set(key, [...(byModules.get(key) ?? []), layer]);
  }
  if (byModules.size === 0) return "none";
  return [...byModules]
    .map(([modules, layers]) => `${modules} (layers ${layers.join(", ")}; not routed)`)
    .join("; ");
}

/** The human-readable form of `steermoe inspect`. */
export function formatModelInfo(info: ModelInfo): string {
  const p = info.parameters;
  const dense = info.numLayers - info.moeLayers.length;
  const rows: [string, string][] = [
    ["model", info.source],
    ["architecture", `${info.architecture} (${info.modelType}, ${info.className})`],
    ["layers", `${info.numLayers} (${info.moeLayers.length} MoE${dense ? `, ${dense} dense` : ""})`],
    ["MoE layers", info.moeLayers.join(", ")],
    ["experts per layer", String(info.numExperts)],
    ["top-k", `${info.topK}${info.normalizeTopk ? " (weights renormalised)" : ""}`],
    ["routing", info.routingFamily],
    ["shared experts", sharedExperts(info.sharedExperts)],
    ["hidden size / vocab", `${info.hiddenSize} / ${info.vocabSize}`],
    ["dtype / device", `${info.dtype} / ${info.device}`],
    ["parameters", count(p.total)],
    ["  attention", count(p.attention)],
    ["  routers", count(p.routers)],
    ["  all experts", `${count(p.experts)} (${((100 * p.experts) / p.total).toFixed(1)}%)`],
    ["  one expert", count(p.oneExpert)],
    ["  other", `${count(p.other)} (embeddings, norms, LM head, shared experts)`],
    ["chat template", info.chatTemplate ? "yes" : "no"],
    ["deterministic", info.deterministic ? "yes (--deterministic)" : "no"],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n");
}
