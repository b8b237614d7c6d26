// The library API: every recipe the CLI runs, and the components they are made of.
export { analyze, AnalyzeSettings, type AnalyzeSummary } from "./recipes/analyze.js";
export { applyDelta, ApplyDeltaSettings } from "./recipes/apply-delta.js";
export { demo, type DemoResult, type DemoSettings } from "./recipes/demo.js";
export { evaluate, EvalSettings, formatResults, type ModelResult } from "./recipes/evaluate.js";
export { exportSteering, ExportSteeringSettings } from "./recipes/export-steering.js";
export { generate, GenerateConfig, type GenerateSummary } from "./recipes/generate.js";
export { formatModelInfo, inspect, InspectSettings, type InspectResult } from "./recipes/inspect.js";
export { jailbreak, JailbreakSettings } from "./recipes/jailbreak.js";
export { buildOrganism } from "./recipes/organism.js";
export { report, type ReportResult, type ReportSettings } from "./recipes/report.js";
export { serve, ServeSettings, type RoutingServer, type ServeOptions } from "./recipes/serve.js";
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
} from "./components/engine/client.js";
export {
  environmentDir,
  setupEnvironment,
  type SetupOptions,
  type SetupResult,
} from "./components/engine/environment.js";
export { UserError } from "./components/errors.js";
export { ModelConfig, SamplingConfig } from "./components/config.js";
export {
  createJudge,
  JudgeConfig,
  type Judge,
  type JudgeItem,
  type Verdict,
} from "./components/judge/judge.js";
export { computeRiskDiff, selectExperts, type ExpertSet } from "./components/method/riskdiff.js";
export { readRoutingShard, type RoutingTrace, type RoutingLayout } from "./components/io/routing.js";
export { readSteerFile, Steering, SteeringFile, steerFromRun } from "./components/method/steering.js";
export { writeSyntheticData } from "./components/data/synthetic.js";
export {
  BENCHMARKS,
  BenchmarkSpec,
  loadBenchmark,
  type BenchmarkItem,
} from "./components/data/benchmarks.js";
export { flipAttack, FlipAttackOptions, FlipMode } from "./components/data/flipattack.js";
export type { GeneratedSample, ReadyInfo, TinyModelResult } from "./components/engine/protocol.js";
export type { Message, Messages, ModelInfo } from "./components/domain.js";
