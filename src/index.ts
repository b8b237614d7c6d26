// The library API: every recipe the CLI runs, and the components they are made of.
export { demo, type DemoConfig } from "./recipes/demo.js";
export { generate, GenerateConfig, type GenerateSummary } from "./recipes/generate.js";
export { formatModelInfo, inspect } from "./recipes/inspect.js";
export { tinyModel, type TinyModelConfig } from "./recipes/tiny-model.js";
export { analyze, AnalyzeSettings, type AnalyzeSummary } from "./recipes/analyze.js";
export { report } from "./recipes/report.js";
export { writeSyntheticData } from "./components/synthetic.js";
export {
  Engine,
  EngineDiedError,
  EngineError,
  withEngine,
  type EngineHandle,
  type EngineOptions,
  type LoadOptions,
} from "./components/engine.js";
export { UserError } from "./components/errors.js";
export { ModelConfig, SamplingConfig } from "./components/config.js";
export type { ModelInfo, GeneratedSample, Messages, Message } from "./components/protocol.js";
export {
  readRoutingShard,
  writeRoutingShard,
  type RoutingTrace,
  type RoutingLayout,
} from "./components/routing.js";
