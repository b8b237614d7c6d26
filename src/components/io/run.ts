// A Run is a folder that one job fills over one or more invocations. Its config.json records
// the settings; a later invocation with the same settings resumes it, one with different
// settings is refused with the difference named, so results from two settings never mix.
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { UserError } from "../errors.js";
import { readJson, writeJsonAtomic } from "./store.js";
import { RunConfig } from "./run-files.js";
import { storableSettings } from "./secrets.js";

function differences(before: unknown, after: unknown, path = ""): string[] {
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  const isObject = (v: unknown): v is Record<string, unknown> =>
    typeof v === "object" && v !== null && !Array.isArray(v);
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => differences(before[k], after[k], path ? `${path}.${k}` : k));
  }
  return [`${path || "settings"} ${JSON.stringify(before)} → ${JSON.stringify(after)}`];
}

/**
 * Open `dir` for a job of `kind` with `settings` (plain JSON data). Returns true when resuming.
 * `describe` adds what is not a setting (versions, model description, dataset hash) to config.json.
 * URLs are stored (and compared) without user:password and query string, and config.json says so.
 */
export function openRun(dir: string, kind: string, settings: object, describe: object): boolean {
  const configPath = join(dir, "config.json");
  const stored = storableSettings(settings);
  if (existsSync(configPath)) {
    const previous = readJson(configPath, RunConfig);
    if (previous.kind !== kind)
      throw new UserError(`${dir} holds a ${previous.kind} run, not ${kind}; choose another folder`);
    const changed = differences(previous.settings, stored.settings);
    if (changed.length) {
      throw new UserError(
        `${dir} was made with other settings (${changed.slice(0, 3).join("; ")}${changed.length > 3 ? "; ..." : ""}); ` +
          "rerun with the same settings to resume, or choose a new folder",
      );
    }
    return true;
  }
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new UserError(`${dir} exists and is not a steermoe run; choose a new folder`);
  }
  writeJsonAtomic(configPath, { kind, ...stored, ...describe });
  return false;
}

/** A config file (JSON or YAML) holding settings; flags given on the command line override it. */
export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new UserError(`${file}: cannot read the config file (${(err as NodeJS.ErrnoException).code})`);
  }
  let value: unknown;
  try {
    value = /\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new UserError(
      `${file}: not valid ${/\.json$/i.test(file) ? "JSON" : "YAML"} (${(err as Error).message.split("\n")[0]})`,
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
