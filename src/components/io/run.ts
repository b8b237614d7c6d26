// A Run is a folder that one job fills over one or more invocations. Its config.json records
// the settings and the model's fingerprint; a later invocation with the same settings and model
// resumes it, one with different settings or a changed model is refused with the difference
// named, so results from two settings or two models never mix. One command at a time (lock.ts).
import { isDeepStrictEqual } from "node:util";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseDocument } from "yaml";
import { UserError } from "../errors.js";
import { decodeText, readInputFile, readJson, writeJsonAtomic } from "./store.js";
import { RunConfig } from "./run-files.js";
import { z } from "zod";
import { storableSettings } from "./secrets.js";
import { lockRun } from "./lock.js";
import { ModelInfo, type ModelFingerprint } from "../domain.js";

function differences(before: unknown, after: unknown, path = ""): string[] {
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  // A switch added to steermoe after the run was made (model.deterministic) was off in that run.
  if (before === undefined && after === false) return [];
  const isObject = (v: unknown): v is Record<string, unknown> =>
    typeof v === "object" && v !== null && !Array.isArray(v);
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => differences(before[k], after[k], path ? `${path}.${k}` : k));
  }
  return [`${path || "settings"} ${JSON.stringify(before)} → ${JSON.stringify(after)}`];
}

/**
 * A setting that names a file or folder whose content a hash in the same settings pins: on resume
 * the hash is compared, not the spelling, so `./data.json`, an absolute path or a run folder copied
 * elsewhere resume alike. The model's source is pinned by its fingerprint the same way.
 */
export interface Pinned {
  /** Dotted path of the setting that names the location, e.g. "data.file". */
  setting: string;
  /** Key of the settings that holds its content's hash, e.g. "datasetSha256". */
  by: string;
}

/** `value` without the setting at the dotted path `keys`. */
function without(value: unknown, keys: string[]): unknown {
  const [head, ...rest] = keys;
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  return Object.fromEntries(
    Object.entries(value).flatMap(([k, v]) =>
      k !== head ? [[k, v]] : rest.length > 0 ? [[k, without(v, rest)]] : [],
    ),
  );
}

/** A run folder named on the command line: a file at that path is named before any work starts. */
export function checkRunFolder(dir: string): void {
  if (existsSync(dir) && !statSync(dir).isDirectory())
    throw new UserError(`${dir} is a file, not a run folder; give the folder's path`);
}

/** What a model's fingerprint (file → size and digest) says changed between two loads. */
function modelChanges(before: ModelFingerprint | undefined, after: ModelFingerprint): string[] {
  if (!before) return []; // made before runs recorded a fingerprint: nothing to compare with
  const files = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  return files.flatMap((file) => {
    if (before[file] === after[file]) return [];
    return [
      `${file} ${before[file] === undefined ? "added" : after[file] === undefined ? "removed" : "changed"}`,
    ];
  });
}

const MODEL_FINGERPRINT = "model fingerprint";

/** What config.json says a run generated on: the engine, and the servers where there were any. */
const BACKEND_FIELDS = ["engine", "servers"];

/**
 * A resume on another backend (a local engine after a server, other servers, other versions)
 * is added to config.json's `resumed_on`: its top-level fields still say what the run started on.
 */
function recordResume(path: string, previous: RunConfig, describe: Record<string, unknown>): void {
  const backend = (config: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(config).filter(([key]) => BACKEND_FIELDS.includes(key)));
  const now = backend(describe);
  const sessions = [backend(previous), ...(previous.resumed_on ?? [])];
  if (sessions.some((s) => isDeepStrictEqual(s, now))) return;
  writeJsonAtomic(path, { ...previous, resumed_on: [...(previous.resumed_on ?? []), now] });
}

const list = (items: string[]) => `${items.slice(0, 3).join("; ")}${items.length > 3 ? "; ..." : ""}`;

/** A job's hold on its run folder: whether it resumes, and the lock to let go of when it ends. */
export interface Run {
  resumed: boolean;
  release(): void;
}

/**
 * Open `dir` for a job of `kind` with `settings` (plain JSON data), locked against other commands
 * until `release()`. `describe` adds what is not a setting (versions, the model with its
 * fingerprint, dataset hash) to config.json. `work` is the subfolder whose files are the job's
 * committed results: a folder without any may be started over with other settings or model,
 * since nothing in it can mix. URLs are stored (and compared) without user:password and query
 * string, and config.json says so. Settings in `pins` are compared by what they point at.
 */
export function openRun(
  dir: string,
  kind: string,
  settings: object,
  describe: { model: ModelInfo } & Record<string, unknown>,
  work: string,
  pins: Pinned[] = [],
): Run {
  const lock = lockRun(dir);
  try {
    const configPath = join(dir, "config.json");
    const stored = storableSettings(settings);
    const entries = readdirSync(dir).filter((name) => name !== ".lock");
    const fresh = () => {
      writeJsonAtomic(configPath, {
        kind,
        ...stored,
        ...describe,
        model: z.encode(ModelInfo, describe.model),
      });
      return { resumed: false, release: lock.release };
    };
    const startOver = () => {
      for (const name of entries) rmSync(join(dir, name), { recursive: true, force: true });
      return fresh();
    };
    if (!existsSync(configPath)) {
      if (entries.length > 0)
        throw new UserError(`${dir} exists and is not a steermoe run; choose a new folder`);
      return fresh();
    }
    const previous = readJson(configPath, RunConfig);
    if (previous.kind !== kind)
      throw new UserError(`${dir} holds a ${previous.kind} run, not ${kind}; choose another folder`);
    const modelChanged = modelChanges(previous.model?.fingerprint, describe.model.fingerprint);
    const fingerprinted = (fingerprint: ModelFingerprint | undefined) =>
      Object.keys(fingerprint ?? {}).length > 0;
    const bothPinned = (pin: Pinned) =>
      pin.by === MODEL_FINGERPRINT
        ? fingerprinted(previous.model?.fingerprint) && fingerprinted(describe.model.fingerprint)
        : [previous.settings, stored.settings].every(
            (s) => typeof (s as Record<string, unknown>)[pin.by] === "string",
          );
    const allPins = [{ setting: "model.source", by: MODEL_FINGERPRINT }, ...pins];
    const compared = (settings: unknown) =>
      allPins.filter(bothPinned).reduce((v, pin) => without(v, pin.setting.split(".")), settings);
    const settingsChanged = differences(compared(previous.settings), compared(stored.settings));
    const committed =
      existsSync(join(dir, work)) && readdirSync(join(dir, work)).some((f) => !f.startsWith("."));
    if (!settingsChanged.length && !modelChanged.length) {
      // A run stopped before its first result (a server that never started, say) is started
      // afresh: its config.json then names what this session runs on, not what failed.
      if (!committed) return startOver();
      recordResume(configPath, previous, describe);
      return { resumed: true, release: lock.release };
    }
    const why = settingsChanged.length
      ? `made with other settings (${list(settingsChanged)})`
      : `made with another model at ${describe.model.source} (${list(modelChanged)})`;
    if (committed) {
      throw new UserError(
        `${dir} was ${why}; ${settingsChanged.length ? "rerun with the same settings" : "rerun with the model it was made with"} to resume, or choose a new folder`,
      );
    }
    process.stderr.write(`steermoe: ${dir} was ${why} but holds no finished ${work} yet; starting it over\n`);
    return startOver();
  } catch (err) {
    lock.release();
    throw err;
  }
}

/** YAML's data only: a tag the core schema does not know (!!python/...) is an error, not a
 * warning printed on stderr and a value taken as a string. */
function plainYaml(text: string): unknown {
  const doc = parseDocument(text, { logLevel: "silent" });
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) throw problem;
  return doc.toJS();
}

/** A config file (JSON or YAML) holding settings; flags given on the command line override it. */
export function readConfigFile(file: string): Record<string, unknown> {
  const text = decodeText(readInputFile(file, "config file"), file, "utf8", "save it as UTF-8");
  let value: unknown;
  try {
    value = /\.json$/i.test(file) ? JSON.parse(text) : plainYaml(text);
  } catch (err) {
    throw new UserError(
      `${file}: not valid ${/\.json$/i.test(file) ? "JSON" : "YAML"} (${(err as Error).message.split("\n")[0]!.replace(/:$/, "")})`,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UserError(`${file}: a config file holds one object of settings`);
  }
  return value as Record<string, unknown>;
}

/** Settings from a config file with flags laid over them (objects merge, everything else replaces). */
export function overlay(
  base: Record<string, unknown>,
  top: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(top)) {
    if (value === undefined) continue;
    const under = out[key];
    const bothObjects = [value, under].every((v) => typeof v === "object" && v !== null && !Array.isArray(v));
    out[key] = bothObjects
      ? overlay(under as Record<string, unknown>, value as Record<string, unknown>)
      : value;
  }
  return out;
}

/** Refuse to mix new results into an old output folder unless asked to replace it. */
export function prepareOutDir(out: string, overwrite: boolean, marker: string): void {
  if (existsSync(out) && !statSync(out).isDirectory())
    throw new UserError(`${out} is a file; give a folder for the output`);
  checkWritable(join(out, marker));
  if (!existsSync(out) || readdirSync(out).length === 0) return;
  if (!overwrite)
    throw new UserError(`${out} already exists and is not empty; choose another --out or pass --overwrite`);
  if (!existsSync(join(out, marker))) {
    throw new UserError(
      `${out} is not a steermoe output (no ${marker}); refusing to delete it, choose another --out`,
    );
  }
  rmSync(out, { recursive: true, force: true });
}

/**
 * An output file may replace only what the same command wrote before (`ours` says whether the
 * existing file is that), never another file: a run's config.json, an analysis' experts.json, a
 * model's weights. Nor may it land in a model folder, whose fingerprint every run made with the
 * model checks.
 */
export function checkOutputFile(out: string, what: string, ours: (text: string) => boolean): void {
  if (existsSync(out)) {
    if (statSync(out).isDirectory())
      throw new UserError(`${out} is a folder; give a file name for the output`);
    if (!ours(readFileSync(out, "utf8").slice(0, 4096)))
      throw new UserError(`${out} exists and is not a ${what}; choose another --out`);
  }
  checkNotModelFolder(dirname(out));
  checkWritable(out);
}

/** A folder holding a Hugging Face model (config.json with a model_type) takes no output of ours. */
export function checkNotModelFolder(dir: string): void {
  const config = join(dir, "config.json");
  if (!existsSync(config)) return;
  try {
    const value = JSON.parse(readFileSync(config, "utf8")) as { model_type?: unknown; kind?: unknown };
    if (typeof value.model_type === "string" && value.kind === undefined)
      throw new UserError(
        `${dir} is a model folder; write outputs elsewhere (its files are the model's fingerprint)`,
      );
  } catch (err) {
    if (err instanceof UserError) throw err;
  }
}

/**
 * An output path in a folder this process can write, checked before the work that fills it: a
 * read-only or foreign folder is named at once, not after every sample has been generated.
 */
export function checkWritable(out: string): void {
  let folder = dirname(resolve(out)); // the folder the file goes in, or its nearest existing parent
  while (!existsSync(folder) && dirname(folder) !== folder) folder = dirname(folder);
  // Writing is the one test that holds for root too, and on read-only mounts.
  let probe: string;
  try {
    probe = mkdtempSync(join(folder, ".steermoe-write-check-"));
  } catch {
    throw new UserError(`cannot write ${out}: ${folder} is not writable`);
  }
  rmSync(probe, { recursive: true, force: true });
}
