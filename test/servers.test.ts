// analyze and generate on inference servers, end to end on loopback: `steermoe serve` (the
// conforming vLLM 0.32.0 / SGLang 0.5.23 server on our engine) answers with generation and
// routed experts, steermoe's server backend records them. The run folders must equal the local
// engine's: same samples, same expert ids in every shard, identical risk-difference tables.
// Faults come from a loopback proxy in front of a real server. The recipes run in this process on
// one engine, so that only the servers pay Python's start-up.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Engine } from "../src/components/engine/client.js";
import { UserError } from "../src/components/errors.js";
import { readRoutingShard } from "../src/components/io/routing.js";
import type { ServerHandle } from "../src/components/servers/generator.js";
import { analyze } from "../src/recipes/analyze.js";
import { generate } from "../src/recipes/generate.js";
import { serve, ServeSettings, type RoutingServer } from "../src/recipes/serve.js";
import { PACKAGE_ROOT, run, tempDir } from "./helpers.js";

const dir = tempDir({ after });
const model = join(PACKAGE_ROOT, "organism", "model");
const KEY = "sk-test-9f3a7c1e";
let data: string;
let engine: Engine;
let vllmA: RoutingServer;
let vllmB: RoutingServer;
let sglangKeyed: RoutingServer;
const local = join(dir, "local");
const read = (path: string) => readFileSync(path, "utf8");

const start = (flavor: "vllm" | "sglang", apiKeyEnv?: string) =>
  serve(ServeSettings.parse({ model: { source: model }, flavor, apiKeyEnv, computeBatch: 8 }));

// Sampled (temperature 1), not greedy: the server seeds each sample's generator as the engine does.
const settings = () => ({
  model: { source: model },
  data: { file: data },
  batch: { size: 4 },
  sampling: { maxNewTokens: 24 },
  qc: false,
});
const servers = (
  backend: "vllm" | "sglang",
  urls: string[],
  more: Partial<ServerHandle> = {},
): ServerHandle => ({
  backend,
  servers: urls,
  requestsPerServer: 4,
  requestTimeout: 120,
  engine,
  ...more,
});
const analyzeOn = (runDir: string, handle: ServerHandle | Engine) =>
  analyze(settings(), { run: runDir, engine: handle, computeBatch: 4 });

before(async () => {
  data = join(dir, "pairs.json");
  // The organism's own held-out pairs: refusals end early (end of sequence), jailbreaks run long.
  const heldout = JSON.parse(read(join(PACKAGE_ROOT, "organism", "data", "heldout.json"))) as object[];
  writeFileSync(data, JSON.stringify(heldout.slice(0, 6)));
  process.env.STEERMOE_TEST_SERVER_KEY = KEY;
  [engine, vllmA, vllmB, sglangKeyed] = await Promise.all([
    Engine.start(),
    start("vllm"),
    start("vllm"),
    start("sglang", "STEERMOE_TEST_SERVER_KEY"),
  ]);
  await analyzeOn(local, engine);
});
after(async () => {
  await Promise.all([engine?.close(), ...[vllmA, vllmB, sglangKeyed].map((s) => s?.stop())]);
});

/** Per token and layer, the set of experts: top-k ids sorted (the order within top-k is a float tie-break). */
function expertSets(ids: Uint8Array | Uint16Array, topK: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < ids.length; i += topK)
    out.push(...Array.from(ids.subarray(i, i + topK)).sort((a, b) => a - b));
  return out;
}

/**
 * Everything but config.json (it names the backend) must be the same: samples, risk-difference
 * tables, and in every shard the experts of every token and layer. Says which (token, layer)
 * rows list the same experts in another order, of how many.
 */
function assertSameRun(runDir: string): string {
  const files = (d: string) => readdirSync(d, { recursive: true }).map(String).sort();
  assert.deepEqual(files(runDir), files(local));
  let shards = 0;
  const reordered: string[] = [];
  let rows = 0;
  for (const name of files(local)) {
    if (name === "config.json" || !name.includes(".")) continue;
    if (name.endsWith(".safetensors")) {
      const [ours, theirs] = [readRoutingShard(join(local, name)), readRoutingShard(join(runDir, name))];
      assert.deepEqual(theirs.layout, ours.layout);
      const k = ours.layout.topK;
      ours.traces.forEach((trace, i) => {
        assert.equal(theirs.traces[i]!.sampleId, trace.sampleId);
        for (const part of ["prompt", "generation"] as const) {
          const [a, b] = [trace[part], theirs.traces[i]![part]];
          assert.deepEqual(
            expertSets(b, k),
            expertSets(a, k),
            `${name} ${trace.sampleId} ${part}: every expert`,
          );
          for (let j = 0; j < a.length; j += k) {
            rows++;
            if (a.subarray(j, j + k).some((id, x) => id !== b[j + x]))
              reordered.push(`${trace.sampleId} ${part} row ${j / k} of ${a.length / k}`);
          }
        }
      });
      shards++;
    } else assert.equal(read(join(runDir, name)), read(join(local, name)), name);
  }
  const samples = read(join(local, "samples.jsonl"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const eos = samples.filter((r) => r.finish_reason === "eos").length;
  assert.equal(shards, 3);
  // Both ways a response ends are covered: at the end of sequence (the last token's routing by a
  // second request) and at the length limit.
  assert.ok(
    eos > 0 && eos < samples.length,
    `${eos} of ${samples.length} responses ended at the end of sequence`,
  );
  return `${reordered.length} of ${rows} (token, layer) rows list the same experts in another order: ${reordered.join(", ")}`;
}

test("analyze on a vLLM server, an SGLang server (with a key) and two vLLM replicas = the local engine", async (t) => {
  const [vllmRun, sglangRun, twoRun] = [join(dir, "vllm"), join(dir, "sglang"), join(dir, "two")];
  await analyzeOn(vllmRun, servers("vllm", [vllmA.url]));
  await analyzeOn(sglangRun, servers("sglang", [sglangKeyed.url], { apiKey: KEY }));
  await analyzeOn(twoRun, servers("vllm", [vllmA.url, vllmB.url], { requestsPerServer: 2 }));
  for (const runDir of [vllmRun, sglangRun, twoRun]) {
    t.diagnostic(`${runDir}: ${assertSameRun(runDir)}`);
  }
  const config = JSON.parse(read(join(sglangRun, "config.json")));
  assert.deepEqual(config.servers, [{ url: sglangKeyed.url, server: "sglang", version: "0.5.23+steermoe" }]);
  assert.equal(config.model.device, "meta", "the client side loads no weights");
  // Servers return ids only: the shards say so.
  assert.match(read(join(sglangRun, "routing", "batch-00000.safetensors")), /"router_weights":"no"/);
  // The key is never written.
  for (const name of readdirSync(sglangRun, { recursive: true }).map(String))
    if (name.includes(".")) assert.ok(!read(join(sglangRun, name)).includes(KEY), name);
  await assert.rejects(
    analyzeOn(join(dir, "nokey"), servers("sglang", [sglangKeyed.url])),
    new UserError(
      `sglang server ${sglangKeyed.url} /server_info answered HTTP 401 (set --api-key-env to the variable holding its key): {"error": "Unauthorized"}`,
    ),
  );
});

type Fault = (
  path: string,
  count: number,
) => "pass" | "500" | "hang" | "garbage" | "die" | "no-routing" | "other-model";

/** A loopback proxy in front of `target` that misbehaves as `fault` says, per request path. */
async function proxy(target: string, fault: Fault): Promise<{ url: string; close: () => Promise<void> }> {
  const counts = new Map<string, number>();
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", async () => {
      const path = req.url!;
      counts.set(path, (counts.get(path) ?? 0) + 1);
      const what = fault(path, counts.get(path)!);
      if (what === "hang") return;
      if (what === "die") {
        server.close();
        server.closeAllConnections();
        return;
      }
      if (what === "500") {
        res.writeHead(500, { "content-type": "application/json" });
        return res.end('{"error":{"message":"EngineCore died"}}');
      }
      if (what === "garbage") {
        res.writeHead(200, { "content-type": "text/html" });
        return res.end("<html>502 Bad Gateway</html>");
      }
      const upstream = await fetch(target + path, {
        method: req.method,
        headers: { "content-type": "application/json" },
        body: req.method === "POST" ? body : undefined,
      });
      let text = await upstream.text();
      if (what === "no-routing") text = text.replace(/"routed_experts": "[^"]*"/g, '"routed_experts": null');
      if (what === "other-model") text = text.replaceAll(model, "acme/other-moe");
      res.writeHead(upstream.status, { "content-type": "application/json" });
      res.end(text);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

test("a server that goes away mid-run: a clear error, and the rerun resumes with every sample once", async () => {
  const runDir = join(dir, "resumed");
  // Gone once the first batch is committed: later batches are lost in flight.
  const dying = await proxy(vllmA.url, (path) =>
    path === "/v1/completions" && existsSync(join(runDir, "samples", "batch-00000.jsonl")) ? "die" : "pass",
  );
  await assert.rejects(
    analyzeOn(runDir, servers("vllm", [dying.url])),
    (err: Error) =>
      err instanceof UserError &&
      /^vllm server \S+ \/v1\/completions (is unreachable|failed 4 attempts)/.test(err.message),
  );
  await dying.close();
  const done = readdirSync(join(runDir, "samples")).length;
  assert.ok(done >= 1 && done < 3, `${done} batches before the server went away`);
  const rerun = await analyzeOn(runDir, servers("vllm", [vllmB.url]));
  assert.ok(rerun.resumed && rerun.complete);
  assertSameRun(runDir);
});

test("500s are retried until the server recovers; hangs, garbage, no routing, another model: clear errors", async (t) => {
  const input = join(dir, "conversations.jsonl");
  const lines = [0, 1, 2].map((i) => JSON.stringify({ messages: [{ role: "user", content: `hello ${i}` }] }));
  writeFileSync(input, lines.join("\n"));
  const gen = (out: string, server: string) =>
    generate(
      { model: { source: model }, input, out: join(dir, out), sampling: { maxNewTokens: 6 } },
      { engine: servers("vllm", [server], { requestTimeout: 1 }) },
    );
  const cases: [Fault, RegExp | null][] = [
    [(path, n) => (path === "/v1/completions" && n <= 2 ? "500" : "pass"), null],
    [
      (path) => (path === "/v1/completions" ? "hang" : "pass"),
      /\/v1\/completions failed 4 attempts in \d+ s: 4× no answer within 1 s$/,
    ],
    [
      (path) => (path === "/v1/completions" ? "garbage" : "pass"),
      /\/v1\/completions answered something that is not JSON: <html>502 Bad Gateway<\/html>$/,
    ],
    [
      (path) => (path === "/v1/completions" ? "no-routing" : "pass"),
      /returned no routed experts: start it with --enable-return-routed-experts$/,
    ],
    [
      (path) => (path === "/v1/models" ? "other-model" : "pass"),
      /serves acme\/other-moe, acme\/other-moe, not \S+: start it with this model/,
    ],
  ];
  for (const [i, [fault, expected]] of cases.entries()) {
    const p = await proxy(vllmA.url, fault);
    t.after(() => p.close());
    // The retried 500s go to a server that answers slowly on this loaded machine: no 1 s limit there.
    const attempt = expected
      ? gen(`out${i}`, p.url)
      : generate(
          { model: { source: model }, input, out: join(dir, `out${i}`), sampling: { maxNewTokens: 6 } },
          { engine: servers("vllm", [p.url]) },
        );
    if (expected === null) {
      assert.equal((await attempt).samples, 3);
      continue;
    }
    await assert.rejects(attempt, (err: Error) => {
      assert.ok(err instanceof UserError, String(err));
      assert.match(err.message, /^vllm server http:\/\/127\.0\.0\.1:\d+/);
      assert.doesNotMatch(err.message, /\n/);
      assert.match(err.message, expected);
      return true;
    });
  }
  // Steering changes routing inside the model: a server cannot. Refused before anything starts.
  const map = join(dir, "map.json");
  writeFileSync(map, JSON.stringify({ biases: [{ layer: 0, expert: 1, bias: "-inf" }] }));
  const steered = run([
    "generate",
    "--model",
    model,
    "--input",
    input,
    "--out",
    join(dir, "steered"),
    "--backend",
    "vllm",
    "--server",
    vllmA.url,
    "--steer",
    map,
  ]);
  assert.equal(steered.status, 1);
  assert.equal(
    steered.stderr,
    "steermoe: steering needs the local engine (--backend local): a vllm server runs its own weights and routing unchanged\n",
  );
});

test("a --server URL with a path, a token in its query and user:password: each request goes to path + API path + query, with Basic auth; no message holds them", async (t) => {
  const token = "tk-Abc%2Fdef%3D%3D";
  const basic = `Basic ${Buffer.from("u:pw-Secret-77").toString("base64")}`;
  // A gateway in front of the server: /base/<API path>?token=..., Basic auth, else a 403 that
  // repeats the request as some gateways do.
  const gate = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", async () => {
      const url = new URL(req.url!, "http://gate");
      if (
        url.search !== `?token=${token}` ||
        req.headers.authorization !== basic ||
        !url.pathname.startsWith("/base/")
      ) {
        res.writeHead(403, { "content-type": "text/plain" });
        return res.end(`forbidden: ${req.url} with ${req.headers.authorization}`);
      }
      const upstream = await fetch(vllmA.url + url.pathname.slice("/base".length), {
        method: req.method,
        headers: { "content-type": "application/json" },
        body: req.method === "POST" ? body : undefined,
      });
      res.writeHead(upstream.status, { "content-type": "application/json" });
      res.end(await upstream.text());
    });
  });
  await new Promise<void>((resolve) => gate.listen(0, "127.0.0.1", resolve));
  t.after(() => gate.close());
  const port = (gate.address() as AddressInfo).port;
  const input = join(dir, "gated.jsonl");
  writeFileSync(input, JSON.stringify({ messages: [{ role: "user", content: "hello" }] }) + "\n");
  const gen = (out: string, server: string) =>
    generate(
      { model: { source: model }, input, out: join(dir, out), sampling: { maxNewTokens: 4 } },
      { engine: servers("vllm", [server]) },
    );
  assert.equal(
    (await gen("gated", `http://u:pw-Secret-77@127.0.0.1:${port}/base?token=${token}`)).samples,
    1,
  );
  await assert.rejects(
    gen("gated-wrong", `http://u:pw-Secret-77@127.0.0.1:${port}/base?token=${token}x`),
    (err: Error) => {
      assert.match(err.message, /answered HTTP 403/);
      for (const secret of [token, decodeURIComponent(token), "pw-Secret-77", basic.slice(6)])
        assert.ok(!err.message.includes(secret), `${secret} in: ${err.message}`);
      return true;
    },
  );
});
