// steermoe serve: the real CLI starts the engine's routing server, which answers vLLM's
// completions API on loopback and stops on Ctrl-C (engine/tests/test_serve.py checks the formats).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { badInputs } from "./bad-inputs/harness.js";
import { BIN, buildTiny, tempDir } from "./helpers.js";

test("steermoe serve listens, answers with token ids and routed experts, and stops on SIGINT", async (t) => {
  const model = await buildTiny(tempDir(t));
  const child = spawn(BIN, ["serve", "--model", model, "--served-model-name", "tiny"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).on("line", (line) => {
      lines.push(line);
      const match = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      if (match) resolve(match[1]!);
    });
    child.on("exit", (code) => reject(new Error(`serve exited with ${code} before listening`)));
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));

  const version = (await (await fetch(`${url}/version`)).json()) as { version: string };
  assert.equal(version.version, "0.32.0+steermoe");
  const reply = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      model: "tiny",
      prompt: [5, 6, 7],
      max_tokens: 4,
      temperature: 0,
      return_token_ids: true,
    }),
  });
  assert.equal(reply.status, 200);
  const body = (await reply.json()) as { choices: { token_ids: number[]; routed_experts: string }[] };
  const [choice] = body.choices;
  assert.equal(choice!.token_ids.length, 4);
  // .npy magic: the routing is a numpy array, base64 (decoded in full by the engine's tests).
  assert.equal(Buffer.from(choice!.routed_experts, "base64").subarray(0, 6).toString("latin1"), "\x93NUMPY");

  child.kill("SIGINT");
  assert.equal(await exited, 0);
  assert.deepEqual(lines, [`listening on ${url}`]);
});

// Python, torch and transformers load before the folder is looked at: one case is enough.
badInputs("serve", [
  {
    name: "model: a folder that does not exist",
    setup: () => ["serve", "--model", "/nonexistent/model"],
    expect: /^steermoe: serve: model folder \/nonexistent\/model does not exist$/,
  },
]);
