// Generation on inference servers (vLLM, SGLang) started with routed experts on: a Generator whose
// work is spread over replicas, a bounded number of requests in flight on each. A small engine
// (tokenizer and config, no weights) renders prompts to ids with the model's chat template, so the
// server sees the very ids the local engine would, and turns the ids and expert ids that come back
// into results and routing shards with the local code.
import { basename } from "node:path";
import { z } from "zod";
import { withEngine, type Engine, type EngineHandle, type LoadOptions } from "../engine/client.js";
import { ndarray } from "../engine/frames.js";
import type { Generator, GenerateRequest } from "../engine/generator.js";
import type { GeneratedSample, ServedSample } from "../engine/protocol.js";
import type { Messages, ModelInfo } from "../domain.js";
import type { RoutingShardRequest } from "../engine/protocol.js";
import { UserError } from "../errors.js";
import { requestText, type RetryPolicy } from "../http.js";
import { publicUrl, takeUrlCredentials } from "../io/secrets.js";
import { sglang } from "./sglang.js";
import { vllm } from "./vllm.js";
import { expertRows, type Completion, type CompletionRequest, type Flavour } from "./routing.js";

export const FLAVOURS = { vllm, sglang } as const;

export const ServerBackend = z.strictObject({
  backend: z.enum(["vllm", "sglang"]),
  /** Replicas serving the same model; the work is shared between them. */
  servers: z.array(z.url({ protocol: /^https?$/ })).min(1),
  /** Requests in flight at once on each server. */
  requestsPerServer: z.number().int().min(1).default(16),
  /** Seconds one request may take (the whole generation of one sample). */
  requestTimeout: z.number().positive().default(600),
  /** The key itself (read from --api-key-env); never written anywhere. */
  apiKey: z.string().min(1).optional(),
});
export type ServerBackend = z.infer<typeof ServerBackend>;

/** A server backend, with the small engine that renders and records (given and kept open, or started). */
export type ServerHandle = ServerBackend & { engine?: EngineHandle };

/** What only the local engine can do (steering, expert deltas): an error on a server backend. */
export function requireLocal(handle: object, what: string): void {
  if ("backend" in handle) {
    const name = String(handle.backend);
    throw new UserError(
      `${what} needs the local engine (--backend local): a ${name} server runs its own weights and routing unchanged`,
    );
  }
}

const policy = (timeoutS: number): RetryPolicy => ({
  maxAttempts: 4,
  baseDelayMs: 500,
  maxDelayMs: 10_000,
  timeoutMs: timeoutS * 1000,
});

/** One replica: its HTTP, its share of requests in flight, and what it has done. */
class Replica {
  inFlight = 0;
  tokens = 0;
  model = "";
  version = "";
  readonly name: string;

  constructor(
    readonly url: string,
    readonly flavour: Flavour,
    private readonly backend: ServerBackend,
  ) {
    // Credentials in a URL are a key too: never shown, never written.
    this.name = publicUrl(url).replace(/\/+$/, "");
  }

  private async call(path: string, body?: object): Promise<unknown> {
    const where = `${this.flavour.name} server ${this.name}`;
    const key = this.backend.apiKey;
    // The path goes after the server's own path, its query (a token, say) after both.
    const url = new URL(this.url);
    const { basic, secrets } = takeUrlCredentials(url, `--server ${this.name}`);
    url.pathname = url.pathname.replace(/\/+$/, "") + path;
    url.hash = "";
    const authorization = key ? `Bearer ${key}` : basic && `Basic ${basic}`;
    const text = await requestText(
      {
        url: url.href,
        method: body ? "POST" : "GET",
        headers: { "content-type": "application/json", ...(authorization && { authorization }) },
        body: body && JSON.stringify(body),
        where: `${where} ${path}`,
        hints: {
          unreachable: "start the server or fix --server",
          auth: key
            ? "check the key in the variable --api-key-env names"
            : "set --api-key-env to the variable holding its key",
          notFound: `is it a ${this.flavour.name} ${this.flavour.pinned} server? check --backend and --server`,
        },
        secrets: key ? [key, ...secrets] : secrets,
      },
      policy(this.backend.requestTimeout),
    );
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw this.error(
        `${path} answered something that is not JSON: ${text.replace(/\s+/g, " ").slice(0, 120)}`,
      );
    }
  }

  error(problem: string): UserError {
    return new UserError(`${this.flavour.name} server ${this.name}: ${problem}`);
  }

  /** Version and the served model, which must be `model` (by name, path or folder name). */
  async identify(model: ModelInfo): Promise<void> {
    let found;
    try {
      found = await this.flavour.identify((path) => this.call(path));
    } catch (err) {
      if (err instanceof UserError) throw err;
      throw this.error(
        `does not describe itself as ${this.flavour.name} does (${(err as Error).message.split("\n")[0]}): check --backend`,
      );
    }
    this.version = found.version;
    const same = (name: string) =>
      name === model.source ||
      basename(name.replace(/\/+$/, "")) === basename(model.source.replace(/\/+$/, ""));
    const served = found.models.find((m) => m.names.some(same));
    if (!served) {
      const names = found.models.flatMap((m) => m.names).join(", ");
      throw this.error(
        `serves ${names}, not ${model.source}: start it with this model, or give --model the model it serves`,
      );
    }
    this.model = served.request;
  }

  async complete(request: Omit<CompletionRequest, "model">, model: ModelInfo): Promise<Completion> {
    const reply = await this.call(
      this.flavour.completionPath,
      this.flavour.body({ ...request, model: this.model }),
    );
    let choices;
    try {
      choices = this.flavour.parse(reply, { layers: model.numLayers, topK: model.topK });
    } catch (err) {
      throw this.error((err as Error).message);
    }
    if (choices.length !== 1) throw this.error(`answered ${choices.length} completions to one prompt`);
    const completion = choices[0]!;
    if (completion.generated.length === 0) throw this.error("generated no token");
    const outside = completion.generated.find((id) => id >= model.vocabSize);
    if (outside !== undefined)
      throw this.error(
        `generated token ${outside}, outside the vocabulary of ${model.source} (${model.vocabSize}): it serves another model`,
      );
    if (request.routingStart !== undefined && completion.routing === null)
      throw this.error(`returned no routed experts: start it with ${this.flavour.routingFlag}`);
    return completion;
  }

  /** `expected` rows of a completion's routing, cut to the MoE layers and checked. */
  rows(completion: Completion, expected: number, model: ModelInfo): Uint8Array | Uint16Array {
    try {
      return expertRows(completion.routing!, expected, model);
    } catch (err) {
      throw this.error(`${(err as Error).message}; is it serving ${model.source}?`);
    }
  }
}

/** Replicas share the work: a request goes to the least busy one with room, or waits for one. */
class Pool {
  private readonly waiting: ((replica: Replica) => void)[] = [];
  private started: number | undefined;

  constructor(
    readonly replicas: Replica[],
    private readonly limit: number,
  ) {}

  async use<T>(work: (replica: Replica) => Promise<T>): Promise<T> {
    this.started ??= Date.now();
    const free = this.replicas
      .filter((r) => r.inFlight < this.limit)
      .sort((a, b) => a.inFlight - b.inFlight)[0];
    const replica = free ?? (await new Promise<Replica>((resolve) => this.waiting.push(resolve)));
    replica.inFlight++;
    try {
      return await work(replica);
    } finally {
      replica.inFlight--;
      this.waiting.shift()?.(replica);
    }
  }

  /** Generated tokens per second of each replica. */
  status(): string {
    const seconds = Math.max((Date.now() - (this.started ?? Date.now())) / 1000, 1e-3);
    return this.replicas.map((r) => `${r.name} ${(r.tokens / seconds).toFixed(1)} tok/s`).join(", ");
  }
}

export async function withServers<T>(
  handle: ServerHandle,
  work: (generator: Generator) => Promise<T>,
): Promise<T> {
  const { engine: engineOptions, ...settings } = handle;
  const backend = ServerBackend.parse(settings);
  const flavour = FLAVOURS[backend.backend];
  const pool = new Pool(
    backend.servers.map((url) => new Replica(url, flavour, backend)),
    backend.requestsPerServer,
  );
  return withEngine(engineOptions ?? {}, (engine) => work(serverGenerator(engine, flavour, pool)));
}

function serverGenerator(engine: Engine, flavour: Flavour, pool: Pool): Generator {
  let model: ModelInfo | undefined;
  const loaded = () => model!;
  return {
    // Enough compute batches going to keep every replica busy while the oldest one is committed.
    slots: pool.replicas.length + 1,
    cuda: true,
    get description() {
      return {
        engine: engine.info,
        servers: pool.replicas.map((r) => ({ url: r.name, server: flavour.name, version: r.version })),
      };
    },
    status: () => pool.status(),
    async load(options: LoadOptions) {
      model = await engine.load({ ...options, device: "meta" });
      await Promise.all(pool.replicas.map((r) => r.identify(loaded())));
      for (const r of pool.replicas) {
        if (r.version.split("+")[0] !== flavour.pinned)
          process.stderr.write(
            `steermoe: ${r.name} runs ${flavour.name} ${r.version}; steermoe reads the routed-experts format of ${flavour.pinned}\n`,
          );
      }
      return loaded();
    },
    countTokens: (conversations, prompt, ids) => engine.countTokens(conversations, prompt, ids),
    // The servers hold the model and size their own batches.
    freeMemory: async () => null,
    applyDelta: async () => requireLocal({ backend: flavour.name }, "an expert delta"),
    async generate(r: GenerateRequest) {
      if (r.steer) requireLocal({ backend: flavour.name }, "steering");
      const { prompts } = await engine.render(r.conversations, false);
      const record = r.shards.length > 0;
      const samples = await Promise.all(
        prompts.map((p, i) =>
          pool.use((replica) =>
            generateOne(replica, Array.from(p.data as Int32Array), r.seeds[i]!, r, record),
          ),
        ),
      );
      return engine.recordServed(samples, r.sampling.maxNewTokens, r.shards);
    },
    async replay(conversations: Messages[], shards: RoutingShardRequest[]) {
      const { prompts, fulls } = await engine.render(conversations, true);
      const samples = await Promise.all(
        fulls!.map((full, i) =>
          pool.use((replica) =>
            replayOne(replica, Array.from(full.data as Int32Array), prompts[i]!.data.length),
          ),
        ),
      );
      const results = await engine.recordServed(samples, null, shards);
      return results.map((s, i): GeneratedSample => ({
        ...s,
        text: conversations[i]!.at(-1)!.content,
        finishReason: "replay",
      }));
    },
  };

  /**
   * One prompt. Asking for one token more than wanted gives the routing of every wanted token
   * (the server leaves out only the last one's); when generation ends earlier, at the end of the
   * sequence, a second request (prompt and response, one new token) gets the last token's routing.
   */
  async function generateOne(
    replica: Replica,
    prompt: number[],
    seed: number,
    r: GenerateRequest,
    record: boolean,
  ): Promise<ServedSample> {
    const max = r.sampling.maxNewTokens;
    const ask = { sampling: r.sampling, seed };
    const first = await replica.complete(
      { ...ask, prompt, maxTokens: record ? max + 1 : max, ...(record && { routingStart: 0 }) },
      loaded(),
    );
    const generated = first.generated.slice(0, max);
    replica.tokens += generated.length;
    const sample: ServedSample = {
      promptIds: ndarray(Int32Array.from(prompt), [prompt.length]),
      generatedIds: ndarray(Int32Array.from(generated), [generated.length]),
    };
    if (!record) return sample;
    const P = prompt.length;
    const G = generated.length;
    let rows: Uint8Array | Uint16Array;
    if (first.generated.length > max) rows = replica.rows(first, P + G, loaded());
    else {
      const head = replica.rows(first, P + G - 1, loaded());
      const last = await replica.complete(
        { ...ask, prompt: [...prompt, ...generated], maxTokens: 1, routingStart: P + G - 1 },
        loaded(),
      );
      const tail = replica.rows(last, 1, loaded());
      rows = new (head.constructor as Uint8ArrayConstructor)(head.length + tail.length);
      rows.set(head);
      rows.set(tail, head.length);
    }
    return { ...sample, ...split(rows, P, G, loaded()) };
  }

  /** Teacher-forced: the whole conversation as the prompt, one new token: every token's routing. */
  async function replayOne(replica: Replica, full: number[], promptLength: number): Promise<ServedSample> {
    const ask = { sampling: { maxNewTokens: 1, temperature: 0, topP: 1 }, seed: 0 };
    const completion = await replica.complete(
      { ...ask, prompt: full, maxTokens: 1, routingStart: 0 },
      loaded(),
    );
    const rows = replica.rows(completion, full.length, loaded());
    const response = full.slice(promptLength);
    return {
      promptIds: ndarray(Int32Array.from(full.slice(0, promptLength)), [promptLength]),
      generatedIds: ndarray(Int32Array.from(response), [response.length]),
      ...split(rows, promptLength, response.length, loaded()),
    };
  }
}

/** Rows of [prompt; generation] tokens → the two parts, [tokens, moeLayers, topK] each. */
function split(rows: Uint8Array | Uint16Array, prompt: number, generation: number, model: ModelInfo) {
  const width = model.moeLayers.length * model.topK;
  const shape = (tokens: number) => [tokens, model.moeLayers.length, model.topK];
  return {
    prompt: ndarray(rows.slice(0, prompt * width), shape(prompt)),
    generation: ndarray(rows.slice(prompt * width, (prompt + generation) * width), shape(generation)),
  };
}
