// The library API: every recipe the CLI runs, and the components they are made of.
export { analyze, AnalyzeSettings, type AnalyzeSummary } from "./recipes/analyze.js";
export { applyDelta } from "./recipes/apply-delta.js";
export { demo, type DemoResult } from "./recipes/demo.js";
export { evaluate, EvalSettings, formatResults, type ModelResult } from "./recipes/evaluate.js";
export { generate, GenerateConfig, type GenerateSummary } from "./recipes/generate.js";
export { formatModelInfo, inspect } from "./recipes/inspect.js";
export { buildOrganism } from "./recipes/organism.js";
export { report } from "./recipes/report.js";
export { tinyModel, type TinyModelConfig } from "./recipes/tiny-model.js";
export { train, TrainSettings, type TrainSummary } from "./recipes/train.js";
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
export { createJudge, JudgeConfig, type Judge, type Verdict } from "./components/judge.js";
export { computeRiskDiff, selectExperts, type ExpertSet } from "./components/riskdiff.js";
export {
  readRoutingShard,
  writeRoutingShard,
  type RoutingTrace,
  type RoutingLayout,
} from "./components/routing.js";
export { Steering } from "./components/steering.js";
export { writeSyntheticData } from "./components/synthetic.js";
export type { ModelInfo, GeneratedSample, Messages, Message } from "./components/protocol.js";
