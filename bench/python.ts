// Running bench/reference.py: one-shot subcommands, and the baseline as a long-lived worker that
// loads its model once and answers one JSON line per request (so its runs interleave with the
// engine's, and a busy machine slows both alike).
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface, type Interface } from "node:readline";
import { PACKAGE_ROOT } from "../src/components/engine/client.js";

const PYTHON = process.env.STEERMOE_PYTHON ?? join(PACKAGE_ROOT, "engine", ".venv", "bin", "python");
const SCRIPT = join(PACKAGE_ROOT, "bench", "reference.py");

function start(args: string[]): ChildProcess {
  return spawn(PYTHON, [SCRIPT, ...args], {
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, PYTHONPATH: join(PACKAGE_ROOT, "engine"), PYTHONUNBUFFERED: "1" },
  });
}

function collectStderr(child: ChildProcess): () => string {
  let tail = "";
  child.stderr!.setEncoding("utf8").on("data", (t: string) => (tail = (tail + t).slice(-4000)));
  return () => tail;
}

/** Run a subcommand to completion; returns its last JSON line. */
export async function runPython<T>(args: string[]): Promise<T> {
  const child = start(args);
  const stderr = collectStderr(child);
  child.stdin!.end();
  let last = "";
  for await (const line of createInterface({ input: child.stdout! })) if (line.trim()) last = line;
  const code = await new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once("exit", resolve);
  });
  if (code !== 0) throw new Error(`reference.py ${args[0]} failed (exit ${code}):\n${stderr()}`);
  return JSON.parse(last) as T;
}

export class PythonWorker {
  private readonly lines: AsyncIterator<string>;
  /** The worker's first line, sent once its model is loaded. */
  ready: unknown;
  private constructor(
    private readonly child: ChildProcess,
    private readonly reader: Interface,
    private readonly stderr: () => string,
  ) {
    this.lines = reader[Symbol.asyncIterator]();
  }

  static async start(args: string[]): Promise<PythonWorker> {
    const child = start(args);
    const worker = new PythonWorker(child, createInterface({ input: child.stdout! }), collectStderr(child));
    worker.ready = await worker.next();
    return worker;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private async next<T>(): Promise<T> {
    const { value, done } = await this.lines.next();
    if (done) throw new Error(`reference.py worker exited:\n${this.stderr()}`);
    return JSON.parse(value as string) as T;
  }

  async request<T>(message: object): Promise<T> {
    this.child.stdin!.write(JSON.stringify(message) + "\n");
    return this.next<T>();
  }

  async close(): Promise<void> {
    const gone = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.stdin!.end();
    this.reader.close();
    await gone;
  }
}
