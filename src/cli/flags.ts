// Flags that set a recipe's settings. The zod schema is the one place a setting's type, range and
// default live: each flag is declared by its settings path, and its parser, choices and the
// default shown in --help are read from the schema at that path.
//
// A command's settings are built in one order: the --config file, then each --set key.path=value,
// then the individual flags (only those given on the command line), then the schema's parse.
import { Command, InvalidArgumentError, Option } from "commander";
import { z } from "zod";
import { readConfigFile } from "../components/io/run.js";
import { UserError, zodProblem } from "../components/errors.js";
import { ComputeBatch, computeBatchSize, MemorySize, MemoryText, ModelConfig } from "../components/config.js";
import { PoolOptions } from "../components/engine/pool.js";
import type { GeneratorHandle } from "../components/engine/backends.js";
import { ServerBackend } from "../components/servers/generator.js";

type Schema = z.core.$ZodType;
type Settings = Record<string, unknown>;

/** A flag bound to a settings path; its value lands there when given on the command line. */
export class SettingOption extends Option {
  constructor(
    flags: string,
    help: string,
    /** Where the value lands in the settings. */
    readonly path: string,
  ) {
    super(flags, help);
  }
}

const WRAPPERS = new Set(["default", "prefault", "optional", "nullable", "readonly"]);

/** The schema at `path` with its wrappers (default, optional, ...) removed, and its default. */
export function settingAt(schema: Schema, path: string): { leaf: Schema; default: unknown } {
  let node = schema;
  let fallback: unknown;
  for (const key of [undefined, ...(path === "" ? [] : path.split("."))]) {
    if (key !== undefined) {
      const next = child(node, key);
      if (!next) throw new Error(`no setting ${path}`);
      node = next;
      fallback = isObject(fallback) ? fallback[key] : undefined;
    }
    // The innermost default is the one a parse of an absent value ends with.
    let own: unknown;
    while (WRAPPERS.has(node._zod.def.type)) {
      const def = node._zod.def as unknown as { defaultValue?: unknown; innerType: Schema };
      if (def.defaultValue !== undefined) own = def.defaultValue;
      node = def.innerType;
    }
    if (own !== undefined) fallback = own;
  }
  return { leaf: node, default: fallback };
}

/** The field `key` of an object, or of the options of a union that have it (their literals merged). */
function child(node: Schema, key: string): Schema | undefined {
  const def = node._zod.def as { type: string; shape?: Record<string, Schema>; options?: Schema[] };
  if (def.type === "object") return def.shape![key];
  if (def.type !== "union") return undefined;
  const found = def.options!.map((o) => settingAt(o, key).leaf);
  const literals = found.flatMap((f) => (f._zod.def.type === "literal" ? literalValues(f) : []));
  return literals.length === found.length && literals.length > 0 ? z.literal(literals as string[]) : found[0];
}

const literalValues = (s: Schema) => (s._zod.def as unknown as { values: unknown[] }).values;
const isObject = (v: unknown): v is Settings => typeof v === "object" && v !== null && !Array.isArray(v);

/** The values a leaf accepts when it is a closed set (enum or literals), else undefined. */
function choicesOf(leaf: Schema): string[] | undefined {
  const def = leaf._zod.def as { type: string; entries?: Record<string, string> };
  if (def.type === "enum") return Object.values(def.entries!);
  if (def.type === "literal") return literalValues(leaf).map(String);
  return undefined;
}

/** What a leaf takes, in words: for flag errors whose text is not a number or not one of these. */
function expected(leaf: Schema): string {
  const def = leaf._zod.def as { type: string; options?: Schema[] };
  if (def.type === "union") return def.options!.map(expected).join(" or ");
  if (def.type === "literal") return literalValues(leaf).map(String).join(" or ");
  if (def.type === "number") return (leaf as z.ZodNumber).isInt ? "a whole number" : "a number";
  return `a ${def.type}`;
}

/** A flag's text to its setting's value: the text, or the number it spells, whichever the leaf takes. */
function parserFor(leaf: Schema): (raw: string) => unknown {
  return (raw) => {
    const numeric = raw.trim() !== "" && Number.isFinite(Number(raw));
    const parsed = numeric ? z.safeParse(leaf, Number(raw)) : undefined;
    if (parsed?.success) return parsed.data;
    const text = z.safeParse(leaf, raw);
    if (text.success) return text.data;
    const issue = (parsed ?? text).error!.issues[0] as
      { code: string; message: string; minimum?: number; maximum?: number; inclusive?: boolean } | undefined;
    if (issue?.code === "too_small" || issue?.code === "too_big") {
      const [bound, op] =
        issue.code === "too_small"
          ? [issue.minimum, issue.inclusive ? ">=" : ">"]
          : [issue.maximum, issue.inclusive ? "<=" : "<"];
      throw new InvalidArgumentError(`expected ${expected(leaf)} ${op} ${bound}`);
    }
    // The schema's own message when the kind of value was right (a pattern), else what it takes.
    const wrongKind = !issue || ["invalid_type", "invalid_union", "invalid_value"].includes(issue.code);
    throw new InvalidArgumentError(wrongKind ? `expected ${expected(leaf)}` : issue.message);
  };
}

const show = (value: unknown) => (typeof value === "string" ? value : JSON.stringify(value));

/**
 * Sets `option` up for the value at `path` of `schema`: booleans are plain flags (`--no-x` sets
 * false) or take `<on|off>`; closed sets list their choices; anything else is parsed by the schema
 * itself. The schema's default is what --help shows.
 */
export function fromSchema<O extends Option>(option: O, schema: Schema, path: string): O {
  const { leaf, default: fallback } = settingAt(schema, path);
  const type = leaf._zod.def.type;
  if (type === "boolean" && /<on\|off>/.test(option.flags)) {
    option.choices(["on", "off"]).argParser((v: string) => {
      if (v !== "on" && v !== "off") throw new InvalidArgumentError("expected on or off");
      return v === "on";
    });
    if (typeof fallback === "boolean") option.default(fallback, fallback ? "on" : "off");
    return option;
  }
  if (type === "boolean") return option;
  const choices = choicesOf(leaf);
  if (choices) option.choices(choices);
  else option.argParser(parserFor(leaf));
  if (fallback !== undefined) option.default(fallback, show(fallback));
  return option;
}

/** The flag for the setting at `path`; its value lands at `at` (default: `path`) of the settings. */
export function setting(schema: Schema, path: string, flags: string, help: string, at = path): SettingOption {
  return fromSchema(new SettingOption(flags, help, at), schema, path);
}

/** A compute option (how, not what, is computed: results do not depend on it). `at`: where it
 * lands in the settings of a command that keeps it there, else it is read from the flags. */
function computeOption(flags: string, help: string, schema: Schema, at?: string): Option {
  return at ? setting(schema, "", flags, help, at) : fromSchema(new Option(flags, help), schema, "");
}

/** Sequences the engine runs at once: --compute-batch on every command that generates. */
export function computeBatchOption(at?: string): Option {
  const auto = `auto: ${computeBatchSize("auto")}, fewer where memory is short`;
  return computeOption(
    "--compute-batch <n|auto>",
    `sequences the engine runs at once (${auto})`,
    ComputeBatch,
    at,
  );
}

/** The memory budget the compute batch shrinks to fit: --max-memory on every command that generates. */
export function maxMemoryOption(at?: string): Option {
  const help = "memory budget for one compute batch, e.g. 8GiB (default: half the free GPU memory or RAM)";
  // Read as text whatever it looks like: "8000000000" is bytes, "8GiB" a size.
  return computeOption("--max-memory <size>", help, MemorySize, at).argParser((raw: string) => {
    const parsed = MemoryText.safeParse(raw);
    if (!parsed.success) throw new InvalidArgumentError(parsed.error.issues[0]!.message);
    return parsed.data;
  });
}

/** --workers and --devices: how many engines generate at once (options: a run resumes with any). */
export function poolOptions(command: Command): Command {
  const devices = settingAt(PoolOptions, "devices").leaf;
  return command
    .addOption(
      fromSchema(
        new Option("--workers <n>", "engines on the CPU, its cores split between them (docs/scale.md)"),
        PoolOptions,
        "workers",
      ),
    )
    .addOption(
      new Option("--devices <list>", "one engine per device, e.g. cuda:0,cuda:1 (replaces --device)")
        .argParser((raw: string) => {
          const parsed = z.safeParse(devices, raw.split(","));
          if (!parsed.success) throw new InvalidArgumentError(parsed.error.issues[0]!.message);
          return parsed.data;
        })
        .conflicts("workers"),
    );
}

/** Adds `value` to the list: for flags given several times. */
const collect = (value: string, list: string[] = []) => [...list, value];

/** --config and --set: settings as data, laid under the individual flags. */
export function configOptions(command: Command): Command {
  return command
    .option("--config <file>", "settings file (JSON or YAML); --set and flags override it")
    .option(
      "--set <key.path=value>",
      "one setting by its path in the --config file (value read as JSON when it parses, else as text; repeatable; flags override it)",
      collect,
    );
}

/** The model flags every command that loads a model takes; `at` is where its model settings sit. */
export function modelOptions(command: Command, at: string, sourceFlag?: string): Command {
  if (sourceFlag) {
    const flags = `${sourceFlag} <path|hub-id>`;
    command.addOption(setting(ModelConfig, "source", flags, "model folder or hub id", `${at}.source`));
  }
  command
    .addOption(setting(ModelConfig, "dtype", "--dtype <dtype>", "weights dtype", `${at}.dtype`))
    .addOption(
      setting(ModelConfig, "device", "--device <device>", "auto, cpu, cuda or cuda:N", `${at}.device`),
    )
    .addOption(
      setting(
        ModelConfig,
        "deviceMap",
        "--device-map <map>",
        "spread the model over every GPU, whole decoder layers per device (generation only)",
        `${at}.deviceMap`,
      ),
    )
    .addOption(
      setting(
        ModelConfig,
        "trustRemoteCode",
        "--trust-remote-code",
        "run code shipped with the model (off unless given)",
        `${at}.trustRemoteCode`,
      ),
    )
    .addOption(
      setting(
        ModelConfig,
        "deterministic",
        "--deterministic",
        "deterministic algorithms only, for the same bytes on a rerun on the same GPU (docs/scale.md, Reproducibility)",
        `${at}.deterministic`,
      ),
    );
  return configOptions(command);
}

/**
 * Writes `value` at `path`, creating objects on the way; a `key[]` step writes into every element
 * of the list at key (one flag for every model of a comparison). `what` names the source in errors.
 */
function setPath(settings: Settings, path: string, value: unknown, what: string): void {
  const [key, ...rest] = path.split(".");
  if (!key || rest.some((k) => k === ""))
    throw new UserError(`${what}: "${path}" is not a key path like batch.size`);
  // Object.prototype's own names would reach past the settings object, never into a setting.
  const foreign = [key, ...rest].find((k) =>
    ["__proto__", "constructor", "prototype"].includes(k.replace(/\[\]$/, "")),
  );
  if (foreign !== undefined) throw new UserError(`${what}: ${foreign} is not a setting`);
  if (key.endsWith("[]")) {
    const list = settings[key.slice(0, -2)];
    if (!Array.isArray(list))
      throw new UserError(`${what}: there is no ${key.slice(0, -2)} list to apply it to`);
    for (const item of list) setPath(item as Settings, rest.join("."), value, what);
    return;
  }
  if (rest.length === 0) {
    settings[key] = value;
    return;
  }
  settings[key] ??= {};
  if (!isObject(settings[key])) throw new UserError(`${what}: ${key} is not an object of settings`);
  setPath(settings[key], rest.join("."), value, what);
}

/** "key.path=value": the value is JSON when it parses as JSON, else the text itself. */
function applySet(settings: Settings, assignment: string): void {
  const at = assignment.indexOf("=");
  if (at <= 0) throw new UserError(`--set ${assignment}: expected key.path=value`);
  const [path, text] = [assignment.slice(0, at), assignment.slice(at + 1)];
  let value: unknown = text;
  try {
    value = JSON.parse(text);
  } catch {
    // Not JSON: the text is the value (--set judge.model=gpt-4o).
  }
  setPath(settings, path, value, `--set ${path}`);
}

/** The value of each SettingOption given on the command line, at its path. */
function givenFlags(command: Command): { flag: string; path: string; value: unknown }[] {
  return command.options
    .filter((o): o is SettingOption => o instanceof SettingOption)
    .filter((o) => command.getOptionValueSource(o.attributeName()) === "cli")
    .map((o) => ({ flag: o.long!, path: o.path, value: command.getOptionValue(o.attributeName()) }));
}

/**
 * A command's settings in a --config file. The file holds one command's settings, or, like
 * organism/demo.json, a section per command (`analyze`, `train`, `eval`, ...) beside a shared
 * `model` (a path or a model settings object) and a `comment`; a command reads its own section
 * and, when it loads one model, the shared model under it.
 */
function configSettings(command: Command, file: string): Settings {
  const value = readConfigFile(file);
  const sections = new Set(command.parent?.commands.map((c) => c.name()) ?? []);
  if (!Object.keys(value).some((key) => sections.has(key))) return value;
  const own = value[command.name()] ?? {};
  if (!isObject(own))
    throw new UserError(`${file}: the ${command.name()} section is not an object of settings`);
  const shared = typeof value.model === "string" ? { source: value.model } : value.model;
  const loadsOneModel = command.options.some((o) => o instanceof SettingOption && o.path === "model.source");
  if (shared === undefined || !loadsOneModel) return own;
  if (!isObject(shared))
    throw new UserError(`${file}: model is neither a path nor an object of model settings`);
  return { ...own, model: { ...shared, ...(isObject(own.model) ? own.model : {}) } };
}

/** The settings a command's flags describe: --config file, then --set, then the flags given. */
export function settingsFromFlags(command: Command): Settings {
  const { config, set } = command.opts<{ config?: string; set?: string[] }>();
  const settings = config ? configSettings(command, config) : {};
  for (const assignment of set ?? []) applySet(settings, assignment);
  for (const { flag, path, value } of givenFlags(command)) setPath(settings, path, value, flag);
  return settings;
}

/** A setting the schema needs and nobody gave: name the flag, or the key for a config file. */
export function requireSetting(command: Command, settings: Settings, path: string): void {
  let node: unknown = settings;
  for (const key of path.split(".")) node = isObject(node) ? node[key] : undefined;
  if (node !== undefined) return;
  const flag = command.options.find((o) => o instanceof SettingOption && o.path === path)?.long;
  throw new UserError(
    `${command.name()} needs ${flag ?? `--set ${path}=...`} (or ${path} in the --config file)`,
  );
}

/** verbose is the program's flag, seen from any command. */
export const verbose = (command: Command): boolean => Boolean(command.optsWithGlobals().verbose);

/** First Ctrl-C asks the running job to stop after the batch in hand; a second one stops now. */
export function interruptible(): AbortSignal {
  const controller = new AbortController();
  process.on("SIGINT", () => {
    if (controller.signal.aborted) {
      process.stderr.write("\nsteermoe: stopped\n");
      process.exit(130);
    }
    process.stderr.write("\nsteermoe: stopping after the current batch (Ctrl-C again to stop now)\n");
    controller.abort();
  });
  return controller.signal;
}

/** Adds one setting flag per [flags, path, help] of `schema`. */
export function settingOptions(
  command: Command,
  schema: Schema,
  list: readonly (readonly [flags: string, path: string, help: string])[],
): Command {
  for (const [flags, path, help] of list) command.addOption(setting(schema, path, flags, help));
  return command;
}

/** --max-new-tokens, --temperature, --top-p, --seed: how every generating command samples. */
export function samplingOptions(command: Command, schema: Schema): Command {
  return settingOptions(command, schema, [
    ["--max-new-tokens <n>", "sampling.maxNewTokens", "tokens generated per response"],
    [
      "--max-prompt-tokens <n>",
      "sampling.maxPromptTokens",
      "longest prompt accepted, chat template included (default: what the model's context leaves)",
    ],
    ["--temperature <t>", "sampling.temperature", "sampling temperature, 0 = greedy"],
    ["--top-p <p>", "sampling.topP", "nucleus sampling mass"],
    ["--seed <n>", "sampling.seed", "sampling seed: response i draws with seed + i"],
  ]);
}

/** --encoding: how a command's data files' bytes are text, at `path` of its settings. */
export const encodingOption = (schema: Schema, path: string): Option =>
  setting(
    schema,
    path,
    "--encoding <encoding>",
    "how data files' bytes are text (utf8 refuses bytes that are not UTF-8)",
  );

/** --seed of the commands that build things from a seed. */
export const seedOption = () =>
  fromSchema(new Option("--seed <n>", "random seed"), z.number().int().min(0).default(0), "");

/** --backend, --server, --api-key-env, --server-requests, --request-timeout: where generation runs. */
export function backendOptions(command: Command): Command {
  return command
    .addOption(
      new Option("--backend <backend>", "where generation runs: the local engine, or vLLM / SGLang servers")
        .choices(["local", "vllm", "sglang"])
        .default("local"),
    )
    .option("--server <url>", "a vLLM or SGLang server (repeat for replicas that share the work)", collect)
    .option("--api-key-env <name>", "environment variable holding the servers' API key")
    .addOption(
      fromSchema(
        new Option("--server-requests <n>", "requests in flight at once on each server"),
        ServerBackend,
        "requestsPerServer",
      ),
    )
    .addOption(
      fromSchema(
        new Option("--request-timeout <s>", "seconds one server request may take"),
        ServerBackend,
        "requestTimeout",
      ),
    );
}

/** Where the command generates, from the backend flags. */
export function generatorHandle(command: Command): GeneratorHandle {
  const flags = command.opts<{
    backend: "local" | "vllm" | "sglang";
    server?: string[];
    apiKeyEnv?: string;
    serverRequests: number;
    requestTimeout: number;
  }>();
  const engine = { verbose: verbose(command) };
  if (flags.backend === "local") {
    const stray = flags.server ? "--server" : flags.apiKeyEnv ? "--api-key-env" : undefined;
    if (stray)
      throw new UserError(`${stray} is for a server backend: add --backend vllm or --backend sglang`);
    return engine;
  }
  if (!flags.server)
    throw new UserError(`--backend ${flags.backend} needs --server URL (repeat it for replicas)`);
  const apiKey = flags.apiKeyEnv === undefined ? undefined : process.env[flags.apiKeyEnv];
  if (flags.apiKeyEnv !== undefined && !apiKey)
    throw new UserError(`--api-key-env ${flags.apiKeyEnv}: that environment variable is not set`);
  const parsed = ServerBackend.safeParse({
    backend: flags.backend,
    servers: flags.server,
    requestsPerServer: flags.serverRequests,
    requestTimeout: flags.requestTimeout,
    apiKey,
  });
  if (!parsed.success) {
    const bad = flags.server.find((url) => !ServerBackend.shape.servers.element.safeParse(url).success);
    throw new UserError(
      bad ? `--server ${bad}: expected an http:// or https:// URL` : zodProblem(parsed.error),
    );
  }
  return { ...parsed.data, engine };
}
