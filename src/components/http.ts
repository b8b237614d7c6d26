// HTTP to the servers steermoe talks to (judge endpoints, inference servers): one request with a
// timeout per attempt, retries with jittered backoff where retrying can help (429, 5xx, timeouts,
// dropped connections), and one-line errors that name the server and never carry its key.
import { UserError } from "./errors.js";
import { redact } from "./io/secrets.js";

export interface RetryPolicy {
  /** HTTP attempts per request. */
  maxAttempts: number;
  /** Backoff before retry n is baseDelayMs·2^(n-1) (jittered); it and Retry-After are capped at maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Per HTTP attempt, headers and body included. */
  timeoutMs: number;
}

export interface HttpRequest {
  url: string;
  method: "GET" | "POST";
  headers: Record<string, string>;
  body?: string;
  /** How errors name the server: "judge endpoint http://…/chat/completions", no credentials. */
  where: string;
  /** What to do when the server is unreachable, refuses the key (401, 403) or knows no such route or model (404). */
  hints: { unreachable: string; auth: string; notFound: string };
  /** Keys and passwords the request carries: never in a message. */
  secrets: readonly string[];
  /** Told when an attempt is slow or a retry starts, with the attempt's number (a progress notice). */
  waiting?: (attempt: number) => void;
}

/** An attempt still unanswered after this long is reported to `waiting` (retries at once). */
const WAITING_AFTER_MS = 10_000;

/**
 * The 2xx reply's text. Retries what a retry can mend: 429, 5xx, timeouts and dropped connections;
 * a refused connection or unknown host (a setup mistake) and a 4xx (a wrong key, URL or model) fail
 * at once.
 */
export async function requestText(request: HttpRequest, policy: RetryPolicy): Promise<string> {
  const { where, secrets } = request;
  const fail = (message: string) => new UserError(redact(message, secrets));
  const quote = (text: string) => excerpt(redact(text, secrets));
  const started = Date.now();
  // Every failed attempt's problem: the final message tells them all, not only the last one.
  const problems: string[] = [];
  const gaveUp = (attempts: number) =>
    `${where} failed ${attempts} attempt${attempts > 1 ? "s" : ""} in ${Math.round((Date.now() - started) / 1000)} s: ${tally(problems)}`;
  for (let attempt = 1; ; attempt++) {
    let status: number;
    let text: string;
    let retryAfterMs: number | undefined;
    if (attempt > 1) request.waiting?.(attempt);
    const slow = request.waiting && setTimeout(() => request.waiting!(attempt), WAITING_AFTER_MS);
    try {
      const res = await fetch(request.url, {
        method: request.method,
        headers: request.headers,
        body: request.body,
        signal: AbortSignal.timeout(policy.timeoutMs),
      });
      status = res.status;
      retryAfterMs = parseRetryAfter(res.headers.get("retry-after"));
      text = await res.text();
    } catch (err) {
      const code = errorCode(err);
      if (code === "ECONNREFUSED" || code === "ENOTFOUND") {
        throw fail(`${where} is unreachable (${code}): ${request.hints.unreachable}`);
      }
      problems.push(isTimeout(err) ? `no answer within ${policy.timeoutMs / 1000} s` : networkProblem(code));
      if (attempt >= policy.maxAttempts) throw fail(gaveUp(attempt));
      await sleep(backoffMs(policy, attempt));
      continue;
    } finally {
      clearTimeout(slow);
    }
    if (status >= 200 && status < 300) return text;
    const answered = `${where} answered HTTP ${status}`;
    if (status === 429 || status >= 500) {
      problems.push(`HTTP ${status}`);
      if (attempt >= policy.maxAttempts) throw fail(`${gaveUp(attempt)}; last answer: ${quote(text)}`);
      await sleep(Math.min(retryAfterMs ?? backoffMs(policy, attempt), policy.maxDelayMs));
      continue;
    }
    const hint =
      status === 401 || status === 403
        ? ` (${request.hints.auth})`
        : status === 404
          ? ` (${request.hints.notFound})`
          : "";
    throw fail(`${answered}${hint}: ${quote(text)}`);
  }
}

function backoffMs(policy: RetryPolicy, attempt: number): number {
  // Jitter spreads the retries of concurrent requests that failed together.
  const delay = policy.baseDelayMs * 2 ** (attempt - 1) * (0.5 + Math.random() / 2);
  return Math.min(delay, policy.maxDelayMs);
}

/** Retry-After is either delay-seconds or an HTTP date. */
function parseRetryAfter(value: string | null): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function errorCode(err: unknown): string {
  // fetch wraps the socket error: TypeError("fetch failed", { cause }); with several addresses
  // (localhost → ::1 and 127.0.0.1) the cause is an AggregateError whose members carry the code.
  const cause = (
    err as { cause?: { code?: string; message?: string; errors?: { code?: string }[] } } | undefined
  )?.cause;
  return (
    cause?.code ??
    cause?.errors?.[0]?.code ??
    cause?.message ??
    (err instanceof Error ? err.message : String(err))
  );
}

/** What a socket error code means, in words a user can act on. */
function networkProblem(code: string): string {
  const known: Record<string, string> = {
    ECONNRESET: "connection reset by the server",
    UND_ERR_SOCKET: "the server closed the connection before answering",
    EPIPE: "the server closed the connection while the request was sent",
    ETIMEDOUT: "the connection timed out",
    EHOSTUNREACH: "no route to the host",
    ENETUNREACH: "no route to the network",
    EAI_AGAIN: "the host name could not be resolved (try again)",
  };
  return known[code] ?? `network error ${code}`;
}

/** "2× connection reset, 1× no answer within 10 s", in order of first appearance. */
function tally(problems: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const p of problems) counts.set(p, (counts.get(p) ?? 0) + 1);
  return [...counts].map(([p, n]) => (n > 1 ? `${n}× ${p}` : p)).join(", ");
}

function isTimeout(err: unknown): boolean {
  return err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** One line, short enough for an error message. */
export function excerpt(text: string, max = 200): string {
  const line = text.replace(/\s+/g, " ").trim();
  if (line === "") return "(empty)";
  return line.length > max ? `${line.slice(0, max)}…` : line;
}
