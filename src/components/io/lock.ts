// One command at a time per run folder: RUN/.lock holds the pid and host of the command writing
// it. A lock whose process is gone (crash, kill -9, power loss) is taken over, since nobody else
// can ever remove it; one held by a live process, or by another host we cannot check, refuses.
import { hostname } from "node:os";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { UserError } from "../errors.js";

const LOCK = ".lock";

const LockFile = z.object({ pid: z.number().int(), host: z.string(), started: z.string() });
type LockFile = z.infer<typeof LockFile>;

export interface RunLock {
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists, it is just not ours.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function readLock(path: string): LockFile | undefined {
  try {
    return LockFile.parse(JSON.parse(readFileSync(path, "utf8")));
  } catch {
    return undefined; // gone, or cut short while its writer was killed: nobody holds it
  }
}

/** Who holds `dir` (a live process here, or any process on another host we cannot check), or the
 * stale lock of a process that is gone. */
function holder(dir: string): { held?: string; stale?: LockFile } {
  const lock = readLock(join(dir, LOCK));
  if (!lock) return {};
  const elsewhere = lock.host === hostname() ? "" : ` on ${lock.host}`;
  if (!elsewhere && !alive(lock.pid)) return { stale: lock };
  return {
    held:
      `run ${dir} is in use by pid ${lock.pid}${elsewhere} (started ${lock.started}); ` +
      `wait for it or remove ${join(dir, LOCK)} if that process is gone`,
  };
}

/** Refuse early, before the slow part of a start (model load), when another command holds `dir`. */
export function assertUnlocked(dir: string): void {
  const { held } = holder(dir);
  if (held) throw new UserError(held);
}

/** Take `dir` for this process (creating it); released by `release()` or when the process exits. */
export function lockRun(dir: string): RunLock {
  if (existsSync(dir) && !statSync(dir).isDirectory())
    throw new UserError(`${dir} is a file, not a run folder`);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new UserError(`${dir}: cannot create the run folder (${(err as NodeJS.ErrnoException).code})`);
  }
  const path = join(dir, LOCK);
  const mine: LockFile = { pid: process.pid, host: hostname(), started: new Date().toISOString() };
  // "wx": created only if absent, so of two commands starting together exactly one wins.
  const take = () => writeFileSync(path, JSON.stringify(mine) + "\n", { flag: "wx" });
  try {
    take();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EEXIST") throw new UserError(`${path}: cannot write the lock (${code})`);
    const { held, stale } = holder(dir);
    if (held) throw new UserError(held);
    if (stale) {
      process.stderr.write(
        `steermoe: ${dir} was locked by pid ${stale.pid}, which is gone; taking the run over\n`,
      );
    }
    rmSync(path, { force: true });
    try {
      take();
    } catch {
      assertUnlocked(dir);
      throw new UserError(`${path}: another command took the lock at the same moment; try again`);
    }
  }
  const release = () => {
    process.off("exit", release);
    if (readLock(path)?.pid === process.pid) rmSync(path, { force: true });
  };
  // A second Ctrl-C ends the process with process.exit: the lock goes with it.
  process.on("exit", release);
  return { release };
}
