// Where the engine's Python lives. An installed package keeps its environment in the user's cache
// ($XDG_CACHE_HOME/steermoe/<version>-<requirements hash>/venv), made by `steermoe setup`; a
// checkout uses engine/.venv from scripts/setup; $STEERMOE_PYTHON overrides both.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { UserError } from "../errors.js";

export const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");
const REQUIREMENTS = join(PACKAGE_ROOT, "engine", "requirements.txt");
const DEV_PYTHON = join(PACKAGE_ROOT, "engine", ".venv", "bin", "python");

function packageVersion(): string {
  const json = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8"));
  return z.object({ version: z.string() }).parse(json).version;
}

/** The folder of this version's environment; another version or requirements.txt gets its own. */
export function environmentDir(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.XDG_CACHE_HOME || join(homedir(), ".cache");
  const hash = createHash("sha256").update(readFileSync(REQUIREMENTS)).digest("hex").slice(0, 12);
  return join(cache, "steermoe", `${packageVersion()}-${hash}`);
}

/** Written last, so a setup that was interrupted is redone rather than trusted. */
const READY = "ready";

export function defaultPython(): string {
  if (process.env.STEERMOE_PYTHON) return process.env.STEERMOE_PYTHON;
  if (existsSync(DEV_PYTHON)) return DEV_PYTHON;
  const dir = environmentDir();
  if (existsSync(join(dir, READY))) return join(dir, "venv", "bin", "python");
  throw new UserError(
    `the engine's Python environment is not set up (${dir}): run \`steermoe setup\` (scripts/setup in a checkout)`,
  );
}

function run(command: string, args: string[], what: string, env: NodeJS.ProcessEnv = process.env): void {
  const result = spawnSync(command, args, { stdio: ["ignore", "inherit", "inherit"], env });
  if (result.error) throw new UserError(`${what}: ${result.error.message}`);
  if (result.status !== 0) throw new UserError(`${what} failed (exit ${result.status ?? result.signal})`);
}

export interface SetupOptions {
  /** Interpreter the environment is made from; Python >= 3.10. */
  python: string;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface SetupResult {
  /** The environment's interpreter: the engine's, and the one that imports `steermoe`. */
  python: string;
  /** False when the environment was already there. */
  created: boolean;
}

/**
 * Makes the engine's environment in the user's cache: a venv with every package of
 * engine/requirements.txt at its pinned version (--no-deps: nothing unpinned, no CUDA torch pulled
 * in), and the steermoe Python package (`import steermoe`). Safe to run again.
 */
export function setupEnvironment(options: SetupOptions): SetupResult {
  const log = options.log ?? (() => {});
  const dir = environmentDir();
  const python = join(dir, "venv", "bin", "python");
  if (existsSync(join(dir, READY))) return { python, created: false };
  const version = spawnSync(options.python, ["-c", "import sys; sys.exit(sys.version_info < (3, 10))"]);
  if (version.error || version.status !== 0) {
    throw new UserError(`setup: ${options.python} is not Python >= 3.10 (give another with --python)`);
  }
  if (!existsSync(python)) {
    log(`creating ${join(dir, "venv")}`);
    run(options.python, ["-m", "venv", join(dir, "venv")], "setup: creating the virtual environment");
  }
  // --no-compile: bytecode for all of torch and transformers (hundreds of models never loaded) is
  // most of pip's time; what the engine imports is compiled at the end.
  const pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--no-compile"];
  log("installing the engine's pinned packages (engine/requirements.txt)");
  run(pip[0]!, [...pip.slice(1), "-r", REQUIREMENTS], "setup: pip install -r engine/requirements.txt");
  // Built from a copy: a build writes build/ and *.egg-info beside the sources.
  const staging = mkdtempSync(join(tmpdir(), "steermoe-engine-"));
  try {
    for (const part of ["pyproject.toml", "steermoe", "steermoe_engine"]) {
      cpSync(join(PACKAGE_ROOT, "engine", part), join(staging, part), { recursive: true });
    }
    log("installing the steermoe Python package");
    run(pip[0]!, [...pip.slice(1), "--no-build-isolation", staging], "setup: pip install steermoe");
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  // Written even where the environment says not to: without it every engine start compiles them
  // again (twice the start-up time).
  const compile = { ...process.env };
  delete compile.PYTHONDONTWRITEBYTECODE;
  run(python, ["-c", "import steermoe, steermoe_engine.operations"], "setup: compiling the engine's imports", compile);
  writeFileSync(join(dir, READY), `${new Date().toISOString()}\n`);
  return { python, created: true };
}
