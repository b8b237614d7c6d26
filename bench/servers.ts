// Generation throughput on `steermoe serve` replicas: one vLLM-flavoured server versus two, the
// same conversations, the same client. `node dist/bench/servers.js [samples] [max-new-tokens]`.
// Prints one line per setting; both replicas share this machine's cores, so on a small CPU box
// the second replica shows the client's overhead and contention rather than a real scale-out.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Engine, PACKAGE_ROOT } from "../src/components/engine/client.js";
import { generate } from "../src/recipes/generate.js";
import { serve, ServeSettings } from "../src/recipes/serve.js";
import { loadAverage } from "./machine.js";

const samples = Number(process.argv[2] ?? 48);
const maxNewTokens = Number(process.argv[3] ?? 24);
const model = join(PACKAGE_ROOT, "organism", "model");
const dir = mkdtempSync(join(tmpdir(), "steermoe-bench-servers-"));
const input = join(dir, "conversations.jsonl");
const goals = Array.from({ length: samples }, (_, i) => `Explain topic number ${i} in two sentences.`);
writeFileSync(
  input,
  goals.map((g) => JSON.stringify({ messages: [{ role: "user", content: g }] })).join("\n"),
);

const replicas = await Promise.all(
  [0, 1].map(() => serve(ServeSettings.parse({ model: { source: model }, computeBatch: 16 }))),
);
const engine = await Engine.start();
try {
  for (const urls of [[replicas[0]!.url], replicas.map((r) => r.url)]) {
    const summary = await generate(
      { model: { source: model }, input, out: join(dir, `out-${urls.length}`), sampling: { maxNewTokens } },
      { engine: { backend: "vllm", servers: urls, requestsPerServer: 16, requestTimeout: 600, engine } },
    );
    console.log(
      `${urls.length} replica(s): ${summary.samples} samples, ${summary.generatedTokens} tokens in ` +
        `${summary.seconds.toFixed(1)} s = ${(summary.generatedTokens / summary.seconds).toFixed(1)} tok/s ` +
        `(load average ${loadAverage()?.toFixed(1) ?? "?"})`,
    );
  }
} finally {
  await engine.close();
  await Promise.all(replicas.map((r) => r.stop()));
  rmSync(dir, { recursive: true, force: true });
}
