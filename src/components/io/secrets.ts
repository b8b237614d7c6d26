// Credentials never leave the process: not in run files, not in messages. A URL may carry them in
// its user:password and its query string (Azure's ?api-key=, a proxy's user:pass@), so URLs are
// stored and shown without both; server replies may repeat a key, so they are redacted.
import { UserError } from "../errors.js";

const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s'"<>]+/gi;

/**
 * The URL without user:password, query string and fragment; a URL with none of them (or text
 * that is not a URL) is returned as it is, so settings without credentials are stored unchanged.
 */
export function publicUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url;
  }
  if (!parsed.username && !parsed.password && !parsed.search && !parsed.hash) return url;
  return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
}

/**
 * `settings` as a run file stores them: plain JSON, every http(s) URL in them made public, and
 * `left_out` saying so when that changed any.
 */
export function storableSettings(settings: object): { settings: unknown; left_out?: string } {
  const stored: unknown = JSON.parse(JSON.stringify(settings), (_key, value: unknown) =>
    typeof value === "string" && /^https?:\/\//i.test(value) ? publicUrl(value) : value,
  );
  const changed = JSON.stringify(stored) !== JSON.stringify(settings);
  return {
    settings: stored,
    ...(changed && { left_out: "user:password and query strings of URLs: they may hold credentials" }),
  };
}

/** Every URL in a message made public: for messages that may quote a flag's value. */
export function hideUrlCredentials(text: string): string {
  return text.replace(URL_IN_TEXT, publicUrl);
}

/**
 * What a URL carries that is a credential, taken out of `url` (which keeps its query for the
 * request): user:password become a Basic authorization (fetch refuses URLs that carry them), and
 * every form a reply or message could repeat is a secret: query values (of 8 characters or more:
 * `?stream=true` is no key) and the password, each as
 * written (percent-encoded, in either hex case) and decoded, and the Basic value. `where` names the
 * URL in the error for undecodable user:password.
 */
export function takeUrlCredentials(url: URL, where: string): { basic?: string; secrets: string[] } {
  const raw = url.search
    .slice(1)
    .split("&")
    .map((pair) => pair.slice(pair.indexOf("=") + 1))
    .filter((v) => v.length >= 8);
  const secrets = [...raw, ...raw.map((v) => v.replace(/%[0-9A-F]{2}/g, (h) => h.toLowerCase()))];
  secrets.push(...[...url.searchParams.values()].filter((v) => v.length >= 8));
  if (!url.username && !url.password) return { secrets };
  const decode = (part: string) => {
    try {
      return decodeURIComponent(part);
    } catch {
      throw new UserError(`${where} has user:password that is not valid %-encoding`);
    }
  };
  const [user, password] = [decode(url.username), decode(url.password)];
  const basic = Buffer.from(`${user}:${password}`).toString("base64");
  secrets.push(url.password, password, basic);
  url.username = "";
  url.password = "";
  return { basic, secrets };
}

const REDACTED = "[redacted]";
// Bearer and Basic credentials, and the shape of OpenAI-style keys, whatever their value.
const CREDENTIAL = /\b(Bearer|Basic)\s+[^\s"',;]+|\bsk-[A-Za-z0-9_-]{8,}/gi;

/**
 * `text` with each of `secrets` replaced (values shorter than 4 characters are no secrets): for
 * what a server says that becomes data (verdict reasons, refusal targets), where a guess by shape
 * would mangle ordinary words.
 */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= 4) out = out.split(secret).join(REDACTED);
  return out;
}

/** For messages: redactSecrets, then anything shaped like a credential, and URLs made public. */
export function redact(text: string, secrets: readonly string[]): string {
  return hideUrlCredentials(
    redactSecrets(text, secrets).replace(CREDENTIAL, (_match, scheme?: string) =>
      scheme ? `${scheme} ${REDACTED}` : REDACTED,
    ),
  );
}
