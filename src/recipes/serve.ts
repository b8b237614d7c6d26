// serve: the engine's routing server (engine/steermoe_engine/http_server.py). It answers like vLLM
// 0.32.0 or SGLang 0.5.23 started with --enable-return-routed-experts, with generation and routing
// from steermoe's engine: a CPU routing server, and the server the scale-out backends are tested on.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { z } from "zod";
import { ComputeBatch, computeBatchSize, ModelConfig } from "../components/config.js";
import { defaultPython, PACKAGE_ROOT } from "../components/engine/environment.js";
import { UserError } from "../components/errors.js";

export const ServeSettings = z.strictObject({
  model: ModelConfig,
  /** Whose wire format: vLLM's /v1/completions or SGLang's /generate. */
  flavor: z.enum(["vllm", "sglang"]).default("vllm"),
  host: z.string().min(1).default("127.0.0.1"),
  /** 0: any free port (the listening line says which). */
  port: z.number().int().min(0).max(65535).default(0),
  /** The name /v1/models reports and requests must use; default: the model source. */
  servedModelName: z.string().min(1).optional(),
  /** false: answer as a server started without --enable-return-routed-experts. */
  routedExperts: z.boolean().default(true),
  /** Most sequences of concurrent requests run together. */
  computeBatch: ComputeBatch,
  /** Environment variable holding the key requests must bear; the key itself is never an argument. */
  apiKeyEnv: z.string().min(1).optional(),
});
export type ServeSettings = z.infer<typeof ServeSettings>;

export interface RoutingServer {
  url: string;
  /** Stops the server; resolves once its process is gone. */
  stop(): Promise<void>;
  /** Resolves with the exit code when the server process ends, whoever ended it. */
  exited: Promise<number | null>;
}

export interface ServeOptions {
  python?: string;
  /** Pass the server's log (stderr) through. */
  verbose?: boolean;
}

const LISTENING = /^listening on (http:\/\/\S+)$/;

function serverArgs(settings: ServeSettings): string[] {
  const { model } = settings;
  return [
    "-m",
    "steermoe_engine.http_server",
    ...["--model", model.source, "--dtype", model.dtype, "--device", model.device],
    ...(model.trustRemoteCode ? ["--trust-remote-code"] : []),
    ...(model.deterministic ? ["--deterministic"] : []),
    ...["--flavor", settings.flavor, "--host", settings.host, "--port", String(settings.port)],
    ...(settings.servedModelName ? ["--served-model-name", settings.servedModelName] : []),
    ...(settings.routedExperts ? [] : ["--no-routed-experts"]),
    ...["--compute-batch", String(computeBatchSize(settings.computeBatch))],
    ...(settings.apiKeyEnv ? ["--api-key-env", settings.apiKeyEnv] : []),
  ];
}

/** Starts the server and resolves once it listens; a server that fails to start is a UserError. */
export async function serve(settings: ServeSettings, options: ServeOptions = {}): Promise<RoutingServer> {
  const child = spawn(options.python ?? defaultPython(), serverArgs(settings), {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, PYTHONPATH: join(PACKAGE_ROOT, "engine"), PYTHONUNBUFFERED: "1" },
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const stderr: string[] = [];
  child.stderr.setEncoding("utf8").on("data", (text: string) => {
    if (options.verbose) process.stderr.write(text);
    stderr.push(...text.split("\n").filter((line) => line.trim()));
    stderr.splice(0, Math.max(0, stderr.length - 20));
  });
  const url = await new Promise<string>((resolve, reject) => {
    child.on("error", (err) => reject(new UserError(`serve: cannot start the engine: ${err.message}`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      const match = LISTENING.exec(line);
      if (match) resolve(match[1]!);
    });
    void exited.then((code) => {
      // The server's own one-line reason (steermoe serve: ...) is its last stderr line.
      const reason = stderr.at(-1)?.replace(/^steermoe serve: /, "") ?? `the server exited with code ${code}`;
      reject(new UserError(`serve: ${reason}`));
    });
  });
  return {
    url,
    exited,
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}
