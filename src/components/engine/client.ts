// The engine client: starts `python -m steermoe_engine` as a child process, performs the
// handshake, and turns each request into a typed promise. Replies come on fd 3, so nothing a
// library prints to stdout can corrupt them; the engine's stderr is kept for error reports.
import { spawn, type ChildProcess } from "node:child_process";
import { join, resolve } from "node:path";
import type { Readable, Writable } from "node:stream";
import { z } from "zod";
import { UserError } from "../errors.js";
import { snakeCase } from "../io/casing.js";
import { defaultPython, PACKAGE_ROOT } from "./environment.js";
import { encodeFrame, FrameDecoder } from "./frames.js";
import type { SteerRequest } from "../method/steering.js";
import { GenerateResult, RenderedIds, ServedSample, ReadyInfo, Reply, TinyModelResult, RoutingShardRequest, TokenCounts, TrainSetupRequest, TrainSetupResult, TrainStepResult, CheckpointPosition, Empty, type TrainStepRequest, type GeneratedSample } from "./protocol.js";
import { ModelInfo, LayerExpertsSchema, type LayerExperts, type Messages } from "../domain.js";

export { PACKAGE_ROOT };
const STDERR_LINES_KEPT = 40;
const LAST_WORDS = "steermoe-engine: ";

/** Raised when the engine reports a failure; carries the Python message (and traceback). */
export class EngineError extends Error {
  override readonly name = "EngineError";
  constructor(
    readonly type: string,
    message: string,
    readonly traceback?: string,
  ) {
    super(message);
  }
}

/** Raised when the engine process is gone: crash, kill, out of memory. */
export class EngineDiedError extends Error {
  override readonly name = "EngineDiedError";
  constructor(
    message: string,
    /** The engine's last lines on stderr. */
    readonly output = "",
  ) {
    super(message);
  }
}

export interface EngineOptions {
  /** Python interpreter; default $STEERMOE_PYTHON, the checkout's engine/.venv (scripts/setup), or
   * the environment `steermoe setup` made. */
  python?: string;
  /** Forward the engine's stderr (library logs, warnings) to ours as it arrives. */
  verbose?: boolean;
  /** Processes that train one model together (FSDP2): the engine starts the others itself and
   * answers for all of them. Training only. */
  ranks?: number;
  /** Torch's CPU threads (OMP/MKL, read when torch is imported); default: one per core. */
  threads?: number;
}

export interface LoadOptions {
  source: string;
  dtype?: "auto" | "bf16" | "fp16" | "fp32";
  device?: string;
  /** Spread the model over every GPU, whole decoder layers per device. */
  deviceMap?: "auto" | "balanced";
  trustRemoteCode?: boolean;
  /** Deterministic algorithms only (torch.use_deterministic_algorithms). */
  deterministic?: boolean;
}

export interface Sampling {
  maxNewTokens: number;
  temperature: number;
  topP: number;
}

/** A tiny model's dimensions; what is left out takes the architecture's tiny default. */
export const TinySize = snakeCase(
  z.object({
    hidden: z.number().int().positive().optional(),
    layers: z.number().int().positive().optional(),
    heads: z.number().int().positive().optional(),
    experts: z.number().int().positive().optional(),
    topK: z.number().int().positive().optional(),
    expertFfn: z.number().int().positive().optional(),
    vocab: z.number().int().positive().optional(),
  }),
);
export type TinySize = z.output<typeof TinySize>;

const ClippedTexts = z.object({ texts: z.array(z.string()), clipped: z.array(z.boolean()) });
type ClippedTexts = z.infer<typeof ClippedTexts>;

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

export class Engine {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private exited: Error | undefined;

  private constructor(
    private readonly child: ChildProcess,
    readonly info: ReadyInfo,
    private readonly requests: Writable,
    private readonly stderrTail: string[],
  ) {}

  static async start(options: EngineOptions = {}): Promise<Engine> {
    const ranks = options.ranks && options.ranks > 1 ? ["--ranks", String(options.ranks)] : [];
    const n = String(options.threads);
    const threads = options.threads === undefined ? {} : { OMP_NUM_THREADS: n, MKL_NUM_THREADS: n };
    const child = spawn(options.python ?? defaultPython(), ["-m", "steermoe_engine", ...ranks], {
      stdio: ["pipe", "ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        ...threads,
        PYTHONPATH: join(PACKAGE_ROOT, "engine"),
        PYTHONUNBUFFERED: "1",
      },
    });
    const requests = child.stdin as Writable;
    const replies = child.stdio[3] as Readable;
    const decoder = new FrameDecoder();
    // Replies and exits can arrive before the handshake is done; they reach the engine once it exists.
    const started: { engine?: Engine } = {};
    const stderrTail: string[] = [];

    const ready = new Promise<ReadyInfo>((resolve, reject) => {
      replies.on("data", (chunk: Buffer) => {
        try {
          for (const message of decoder.push(chunk)) {
            if (started.engine) started.engine.onReply(message);
            else resolve(ReadyInfo.parse(message));
          }
        } catch (err) {
          reject(err as Error);
          started.engine?.fail(
            new EngineDiedError(`engine sent an unreadable reply: ${(err as Error).message}`),
          );
          child.kill("SIGKILL");
        }
      });
      child.on("error", (err) => reject(new UserError(`cannot start the engine: ${err.message}`)));
      // "close", not "exit": its last lines on stderr (which rank died) arrive before the end.
      child.on("close", (code, signal) => {
        const how = signal ? `was killed (${signal})` : `exited with code ${code}`;
        // An engine that ends itself on purpose (a rank of its own died) says why in one marked line.
        const why = stderrTail.findLast((line) => line.startsWith(LAST_WORDS))?.slice(LAST_WORDS.length);
        const tail = stderrTail.slice(-8).join("\n");
        const err = new EngineDiedError(`the engine ${how}${why ? `: ${why}` : ""}`, tail);
        reject(err);
        started.engine?.fail(err);
      });
    });
    child.stderr?.setEncoding("utf8").on("data", (text: string) => {
      if (options.verbose) process.stderr.write(text);
      stderrTail.push(...text.split("\n").filter((line) => line.trim()));
      stderrTail.splice(0, Math.max(0, stderrTail.length - STDERR_LINES_KEPT));
    });
    // A closed pipe shows up as the exit above; without a listener it would throw here instead.
    requests.on("error", () => undefined);

    const info = await ready;
    started.engine = new Engine(child, info, requests, stderrTail);
    return started.engine;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private onReply(message: unknown): void {
    const reply = Reply.parse(message);
    const waiter = this.pending.get(reply.id);
    if (!waiter) return;
    this.pending.delete(reply.id);
    if (reply.ok) waiter.resolve(reply.result);
    else waiter.reject(new EngineError(reply.error.type, reply.error.message, reply.error.traceback));
  }

  private fail(err: Error): void {
    this.exited = err;
    for (const waiter of this.pending.values()) waiter.reject(err);
    this.pending.clear();
  }

  /** Send one request and parse its reply with `schema`. */
  async call<S extends z.ZodType>(op: string, params: object, schema: S): Promise<z.infer<S>> {
    if (this.exited) throw this.exited;
    const id = this.nextId++;
    const result = new Promise<unknown>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    for (const chunk of encodeFrame({ id, op, params })) this.requests.write(chunk);
    return schema.parse(await result);
  }

  load(options: LoadOptions): Promise<ModelInfo> {
    return this.call(
      "load",
      {
        source: options.source,
        dtype: options.dtype ?? "auto",
        device: options.device ?? "auto",
        device_map: options.deviceMap ?? null,
        trust_remote_code: options.trustRemoteCode ?? false,
        deterministic: options.deterministic ?? false,
      },
      ModelInfo,
    );
  }

  /**
   * Routing is recorded when `shards` says where: each takes the next samples, in order. `ids`
   * name the conversations (records of the caller's files) in the engine's errors.
   */
  async generate(
    conversations: Messages[],
    seeds: number[],
    sampling: Sampling,
    shards: RoutingShardRequest[] = [],
    steer?: SteerRequest,
    ids?: string[],
  ): Promise<GeneratedSample[]> {
    const params = {
      conversations,
      ids,
      seeds,
      max_new_tokens: sampling.maxNewTokens,
      temperature: sampling.temperature,
      top_p: sampling.topP,
      shards: absolute(shards),
      steer,
    };
    return (await this.call("generate", params, GenerateResult)).samples;
  }

  async replay(
    conversations: Messages[],
    shards: RoutingShardRequest[],
    ids?: string[],
  ): Promise<GeneratedSample[]> {
    const params = { conversations, ids, shards: absolute(shards) };
    return (await this.call("replay", params, GenerateResult)).samples;
  }

  /** Tokens of each conversation as generation (prompt) or training (whole) renders it. */
  async countTokens(conversations: Messages[], addGenerationPrompt: boolean, ids?: string[]): Promise<Int32Array> {
    const params = { conversations, ids, add_generation_prompt: addGenerationPrompt };
    const reply = await this.call("count_tokens", params, TokenCounts);
    return reply.lengths.data as Int32Array;
  }

  /** Bytes free now where the model sits (GPU memory or available RAM); null when unknown. */
  async freeMemory(): Promise<number | null> {
    return (await this.call("free_memory", {}, z.object({ bytes: z.number().nullable() }))).bytes;
  }

  /** The token ids the model's chat template makes of each conversation: prompts (with the
   * generation prompt), and for a replay also the whole conversations. */
  async render(conversations: Messages[], replay: boolean): Promise<RenderedIds> {
    return this.call("render", { conversations, replay }, RenderedIds);
  }

  /** Results and shards from ids and expert ids a server generated (`maxNewTokens` null: a replay). */
  async recordServed(
    samples: ServedSample[],
    maxNewTokens: number | null,
    shards: RoutingShardRequest[],
  ): Promise<GeneratedSample[]> {
    const params = {
      samples: samples.map((s) => z.encode(ServedSample, s)),
      max_new_tokens: maxNewTokens,
      shards: absolute(shards),
    };
    return (await this.call("record_served", params, GenerateResult)).samples;
  }

  buildTiny(
    arch: string,
    out: string,
    seed: number,
    options: { size?: TinySize; corpus?: string[]; released?: boolean } = {},
  ): Promise<TinyModelResult> {
    const { size = {}, corpus, released = false } = options;
    return this.call(
      "build_tiny",
      { arch, out, seed, size: z.encode(TinySize, size), corpus, released },
      TinyModelResult,
    );
  }

  trainSetup(setup: TrainSetupRequest): Promise<TrainSetupResult> {
    return this.call("train_setup", z.encode(TrainSetupRequest, setup), TrainSetupResult);
  }

  trainStep(step: TrainStepRequest): Promise<TrainStepResult> {
    return this.call("train_step", step, TrainStepResult);
  }

  async saveCheckpoint(path: string, position: CheckpointPosition): Promise<void> {
    await this.call("save_checkpoint", { path, ...position }, Empty);
  }

  loadCheckpoint(path: string): Promise<CheckpointPosition> {
    return this.call("load_checkpoint", { path }, CheckpointPosition);
  }

  /** Write the loaded (possibly trained) model as a Hugging Face model folder. */
  async saveModel(out: string): Promise<void> {
    await this.call("save_model", { out }, Empty);
  }

  async saveDelta(out: string, experts: LayerExperts, metadata: Record<string, string>): Promise<string[]> {
    return (
      await this.call("save_delta", { out, experts, metadata }, z.object({ tensors: z.array(z.string()) }))
    ).tensors;
  }

  async applyDelta(delta: string): Promise<LayerExperts> {
    return (await this.call("apply_delta", { delta }, z.object({ experts: LayerExpertsSchema }))).experts;
  }

  /**
   * Texts as HarmBench's classifier sees them: each encoded by `tokenizer` (a folder or a hub id),
   * cut to `maxTokens` tokens and decoded again; `clipped` says which were cut.
   */
  async clipTexts(tokenizer: string, maxTokens: number, texts: string[]): Promise<ClippedTexts> {
    return this.call("clip_texts", { tokenizer, max_tokens: maxTokens, texts }, ClippedTexts);
  }

  /** Ask the engine to exit and wait for it; kill it if it does not go within a few seconds. */
  async close(): Promise<void> {
    if (this.exited || this.child.exitCode !== null) return;
    const gone = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.requests.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await gone;
    clearTimeout(timer);
  }

  /** Stop the engine at once (second Ctrl-C, fatal error). */
  kill(): void {
    this.child.kill("SIGKILL");
  }

  /** The engine's recent stderr, for reports when something went wrong. */
  recentLog(): string {
    return this.stderrTail.join("\n");
  }
}

// The engine's working folder is not ours to rely on.
const absolute = (shards: RoutingShardRequest[]) =>
  shards.map((s) => z.encode(RoutingShardRequest, { ...s, path: resolve(s.path) }));

/** A recipe runs on an engine it is given (kept open), or starts one with these options. */
export type EngineHandle = Engine | EngineOptions;

export async function withEngine<T>(handle: EngineHandle, work: (engine: Engine) => Promise<T>): Promise<T> {
  if (handle instanceof Engine) return work(handle);
  const engine = await Engine.start(handle);
  try {
    return await work(engine);
  } finally {
    await engine.close();
  }
}
