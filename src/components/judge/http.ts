// One OpenAI-compatible endpoint: a request with retries, bounded concurrency, and the on-disk
// cache that makes a rerun (or a resumed run) never pay for the same question twice.
import { z } from "zod";
import { UserError, zodProblem } from "../errors.js";
import { appendJsonl, readJsonlLog, sha256 } from "../io/store.js";
import { publicUrl, redact, redactSecrets, takeUrlCredentials } from "../io/secrets.js";
import { excerpt, requestText } from "../http.js";

/** Any OpenAI-compatible server: OpenAI itself, vLLM, llama.cpp, Ollama, ... */
export const OpenAIEndpoint = z.object({
  /**
   * e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1; /chat/completions is appended to
   * the path, a query string (?api-version=...) is kept, user:password@ is sent as Basic auth.
   * Run files store it without user:password and query string; messages show it so too.
   */
  baseUrl: z.url({ protocol: /^https?$/ }),
  model: z.string().min(1),
  /** NAME of the environment variable holding the API key. null = send no key (local servers). */
  apiKeyEnv: z.string().min(1).nullable().default("OPENAI_API_KEY"),
  /** Requests in flight at once. */
  concurrency: z.number().int().min(1).max(64).default(8),
  /** HTTP attempts per request; 429, 5xx, timeouts and dropped connections are retried. */
  maxAttempts: z.number().int().min(1).default(5),
  /** Backoff before retry n is baseDelayMs·2^(n-1) (jittered); it and Retry-After are capped at maxDelayMs. */
  baseDelayMs: z.number().min(0).default(500),
  maxDelayMs: z.number().min(0).default(30_000),
  /** Per HTTP attempt, headers and body included (--judge-timeout, in seconds). */
  timeoutMs: z.number().int().positive().default(60_000),
  /** How many times to ask when the endpoint answers 200 but with content of the wrong shape. */
  replyAttempts: z.number().int().min(1).default(3),
  maxTokens: z.number().int().positive().default(512),
});
export type EndpointConfig = z.infer<typeof OpenAIEndpoint>;

export function parseConfig<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new UserError(`${what} ${zodProblem(result.error)}`);
}

export interface Endpoint {
  cfg: EndpointConfig;
  /** The base URL with user:password and query string taken out; the query goes back on requests. */
  base: URL;
  /** "judge endpoint" or "refusal endpoint": how errors name it. */
  role: string;
  headers: Record<string, string>;
  /** Everything a reply could echo back that must not be shown: the key, the password, query values. */
  secrets: string[];
  /** When the last "waiting for" line was printed (ms). */
  noticedAt: number;
}

export function resolveEndpoint(cfg: EndpointConfig, role: "judge" | "refusal"): Endpoint {
  const base = new URL(cfg.baseUrl);
  const shown = publicUrl(cfg.baseUrl);
  const headers: Record<string, string> = { "content-type": "application/json" };
  const hasUserPassword = Boolean(base.username || base.password);
  const { basic, secrets } = takeUrlCredentials(base, `the ${role} URL ${shown}`);
  // Whitespace around a key (a file read with its newline) is no part of it.
  const key = cfg.apiKeyEnv === null ? undefined : process.env[cfg.apiKeyEnv]?.trim();
  if (key && /[^\x21-\x7e]/.test(key)) {
    throw new UserError(
      `environment variable ${cfg.apiKeyEnv} holds a character an HTTP header cannot carry ` +
        "(a space, line break or non-ASCII letter inside the key): check its value",
    );
  }
  if (hasUserPassword) {
    if (key) {
      throw new UserError(
        `the ${role} URL ${shown} carries user:password and ${cfg.apiKeyEnv} holds an API key: ` +
          `give one of them (set apiKeyEnv to null to use the URL's)`,
      );
    }
    headers.authorization = `Basic ${basic}`;
  } else if (cfg.apiKeyEnv !== null) {
    if (!key) {
      throw new UserError(
        `environment variable ${cfg.apiKeyEnv} is not set: export the API key for ${shown} in it, ` +
          `or set apiKeyEnv to null in the ${role} config if that server needs no key`,
      );
    }
    headers.authorization = `Bearer ${key}`;
    secrets.push(key);
  }
  base.hash = "";
  return { cfg, base, role: `${role} endpoint`, headers, secrets, noticedAt: 0 };
}

/**
 * What to ask: chat messages for /chat/completions, or a raw prompt for the legacy /completions
 * (classifiers trained on one exact prompt, such as HarmBench's, want their text untouched by a
 * chat template).
 */
export type Question =
  | { messages: { role: "system" | "user" | "assistant"; content: string }[]; json?: boolean }
  | { prompt: string };

const ChatCompletion = z.object({
  choices: z.array(z.object({ message: z.object({ content: z.string() }) })).min(1),
});
const TextCompletion = z.object({ choices: z.array(z.object({ text: z.string() })).min(1) });

/** Where a question goes: the base URL's path with the API's appended, its query kept. */
function requestUrl(endpoint: Endpoint, question: Question): string {
  const url = new URL(endpoint.base);
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/${"prompt" in question ? "completions" : "chat/completions"}`;
  return url.href;
}

/** The request URL as messages show it and caches key it: no query string, no credentials. */
export const questionUrl = (endpoint: Endpoint, question: Question) =>
  publicUrl(requestUrl(endpoint, question));

/** A reply's text fit for a message: the endpoint's secrets redacted, one line, capped. */
export const quote = (endpoint: Endpoint, text: string, max?: number) =>
  excerpt(redact(text, endpoint.secrets), max);

const failure = (endpoint: Endpoint, message: string) => new UserError(redact(message, endpoint.secrets));

/**
 * Asks until `accept` takes the reply's content, up to cfg.replyAttempts times. Returns the value,
 * or the last content (or raw reply) that was not accepted.
 */
export async function ask<T>(
  endpoint: Endpoint,
  question: Question,
  accept: (content: string) => T | undefined,
): Promise<{ value: T } | { rejected: string }> {
  const { cfg } = endpoint;
  const common = { model: cfg.model, temperature: 0, max_tokens: cfg.maxTokens };
  const body = JSON.stringify(
    "prompt" in question
      ? { ...common, prompt: question.prompt }
      : {
          ...common,
          messages: question.messages,
          ...(question.json && { response_format: { type: "json_object" } }),
        },
  );
  const url = requestUrl(endpoint, question);
  const shape = "prompt" in question ? TextCompletion : ChatCompletion;
  let last = "";
  for (let i = 0; i < cfg.replyAttempts; i++) {
    // A reply repeating the key must not carry it into verdicts, caches or training targets.
    const text = redactSecrets(await post(endpoint, url, body), endpoint.secrets);
    const completion = shape.safeParse(parseJsonLoosely(text));
    const choice = completion.success ? completion.data.choices[0] : undefined;
    const content = choice && ("text" in choice ? choice.text : choice.message.content);
    const value = content === undefined ? undefined : accept(content);
    if (value !== undefined) return { value };
    last = content ?? text;
  }
  return { rejected: last };
}

/** ask, where an answer that is never accepted is an error naming what was expected. */
export async function askOrFail<T>(
  endpoint: Endpoint,
  question: Question,
  expected: string,
  accept: (content: string) => T | undefined,
): Promise<T> {
  const reply = await ask(endpoint, question, accept);
  if ("value" in reply) return reply.value;
  throw failure(
    endpoint,
    `${endpoint.role} ${questionUrl(endpoint, question)} answered something that is not ${expected}: ` +
      quote(endpoint, reply.rejected),
  );
}

/** Concurrent requests to one endpoint share the line: at most one per this interval. */
const NOTICE_EVERY_MS = 5_000;

/** "waiting for judge endpoint http://host/v1 (attempt 2/5, 60 s timeout)" on stderr. */
function noticeWaiting(endpoint: Endpoint, attempt: number): void {
  const now = Date.now();
  if (now - endpoint.noticedAt < NOTICE_EVERY_MS) return;
  endpoint.noticedAt = now;
  const { cfg } = endpoint;
  process.stderr.write(
    `waiting for ${endpoint.role} ${publicUrl(endpoint.base.href)} ` +
      `(attempt ${attempt}/${cfg.maxAttempts}, ${cfg.timeoutMs / 1000} s timeout)\n`,
  );
}

/** POSTs body; returns the 200 reply's text. */
function post(endpoint: Endpoint, url: string, body: string): Promise<string> {
  const { cfg } = endpoint;
  const basic = endpoint.headers.authorization?.startsWith("Basic ");
  return requestText(
    {
      url,
      method: "POST",
      headers: endpoint.headers,
      body,
      where: `${endpoint.role} ${publicUrl(url)}`,
      hints: {
        unreachable: "start the server or fix --judge-url",
        auth: `check ${basic ? "user:password in the URL" : `the key in ${cfg.apiKeyEnv ?? "apiKeyEnv"}`}`,
        notFound: "check --judge-url and --judge-model",
      },
      secrets: endpoint.secrets,
      waiting: (attempt) => noticeWaiting(endpoint, attempt),
    },
    cfg,
  );
}

/** JSON.parse that tolerates a ```json fence around the object and returns undefined on failure. */
export function parseJsonLoosely(text: string): unknown {
  const unfenced = text
    .trim()
    .replace(/^```(?:json)?\s*/i, "")
    .replace(/\s*```$/, "");
  try {
    return JSON.parse(unfenced);
  } catch {
    return undefined;
  }
}

/** Runs fn over items with at most `limit` in flight; after the first failure no new item starts. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i] as T);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.error;
  return results;
}

// ---------------------------------------------------------------------------------------------
// cache: append-only JSONL of {key, value}

const CacheRecord = z.object({ key: z.string(), value: z.unknown() });

/** The key of one question: everything that shapes the answer (judge, prompt text, model) and the item. */
export function cacheKey(identity: readonly string[], ...item: string[]): string {
  return sha256(JSON.stringify([...identity, ...item]));
}

export interface Cache {
  /**
   * The cached value for key (if it fits schema), else compute it; it is remembered and persisted
   * only if `keep` says so (a judge does not keep answers it could not parse: a rerun asks again).
   */
  through<T>(
    key: string,
    schema: z.ZodType<T>,
    compute: () => Promise<T>,
    keep?: (value: T) => boolean,
  ): Promise<T>;
}

export function openCache(path: string | undefined): Cache {
  const values = path ? loadCache(path) : new Map<string, unknown>();
  // Identical items in one batch share one request instead of racing two.
  const pending = new Map<string, Promise<unknown>>();
  const persist = (key: string, value: unknown) => {
    values.set(key, value);
    if (!path) return;
    // Appending (not rewriting) is safe here: a crash can tear at most the last line, and loading
    // drops it. Synced, so a verdict we paid for survives a power cut. The folder is made
    // only now: a failed run leaves none behind.
    appendJsonl(path, { key, value });
  };
  return {
    async through<T>(
      key: string,
      schema: z.ZodType<T>,
      compute: () => Promise<T>,
      keep: (value: T) => boolean = () => true,
    ): Promise<T> {
      const hit = schema.safeParse(values.get(key));
      if (hit.success) return hit.data;
      const inFlight = pending.get(key);
      if (inFlight) return inFlight as Promise<T>;
      const promise = compute().then((value) => {
        if (keep(value)) persist(key, value);
        return value;
      });
      pending.set(key, promise);
      try {
        return await promise;
      } finally {
        pending.delete(key);
      }
    },
  };
}

function loadCache(path: string): Map<string, unknown> {
  // Later lines win: a key is appended again only if its value no longer fit the schema.
  return new Map(readJsonlLog(path, CacheRecord).map((r) => [r.key, r.value]));
}
