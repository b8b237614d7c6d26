// The engine client against a real engine process.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { z } from "zod";
import { Engine, EngineDiedError, EngineError, PACKAGE_ROOT } from "../src/components/engine/client.js";
import { buildTiny, PYTHON, tempDir } from "./helpers.js";

// Removed once every test of this file has run.
const dir = tempDir({ after });
let model: string;
before(async () => {
  model = await buildTiny(dir);
});

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until(condition: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (condition()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return condition();
}

test("handshake reports versions; load describes the model", async () => {
  const engine = await Engine.start();
  try {
    assert.match(engine.info.python, /^3\.\d+/);
    assert.match(engine.info.torch, /^2\.13\.0/);
    assert.match(engine.info.transformers, /^5\./);
    const info = await engine.load({ source: model });
    assert.equal(info.modelType, "olmoe");
    assert.deepEqual(info.moeLayers, [0, 1]);
    assert.equal(info.device, "cpu");
  } finally {
    await engine.close();
  }
});

test("engine failures arrive as typed errors and the engine stays usable", async () => {
  const engine = await Engine.start();
  try {
    await assert.rejects(engine.load({ source: join(dir, "missing") }), (err: Error) => {
      assert.ok(err instanceof EngineError);
      assert.equal(err.type, "EngineError");
      assert.match(err.message, /does not exist/);
      return true;
    });
    await assert.rejects(engine.call("generate", {}, z.unknown()), (err: Error) => {
      assert.ok(err instanceof EngineError);
      assert.equal(err.type, "KeyError");
      assert.match(err.traceback ?? "", /Traceback/);
      return true;
    });
    await assert.rejects(engine.call("no_such_op", {}, z.unknown()), /unknown op 'no_such_op'/);
    assert.equal((await engine.load({ source: model })).numExperts, 8);
  } finally {
    await engine.close();
  }
});

test("a reply that does not match its schema is rejected", async () => {
  const engine = await Engine.start();
  try {
    await assert.rejects(
      engine.call(
        "load",
        { source: model, dtype: "auto", device: "cpu", trust_remote_code: false, deterministic: false },
        z.object({ nope: z.string() }),
      ),
      z.ZodError,
    );
  } finally {
    await engine.close();
  }
});

test("kill -9 during a request is reported at once, not a hang", async () => {
  const engine = await Engine.start();
  await engine.load({ source: model });
  const conversations = Array.from({ length: 64 }, () => [
    { role: "user" as const, content: "Tell me a story." },
  ]);
  const request = engine.generate(
    conversations,
    conversations.map((_, i) => i),
    { maxNewTokens: 4000, temperature: 1, topP: 1 },
  );
  setTimeout(() => process.kill(engine.pid!, "SIGKILL"), 300);
  const started = Date.now();
  await assert.rejects(request, (err: Error) => {
    assert.ok(err instanceof EngineDiedError);
    assert.match(err.message, /killed \(SIGKILL\)/);
    return true;
  });
  assert.ok(Date.now() - started < 5000);
  await assert.rejects(engine.load({ source: model }), EngineDiedError);
});

test("what libraries print to stdout cannot corrupt the channel", async (t) => {
  // An interpreter wrapper whose Python keeps printing to stdout from a thread, before and after
  // the engine starts.
  const noisy = join(tempDir(t), "noisy-python");
  const code = [
    "import os, sys, threading, time, runpy",
    "def noise():",
    "    while True:",
    "        print('{\"id\": 1, \"ok\": true} noise', flush=True); os.write(1, b'\\x00\\x01raw'); time.sleep(0.01)",
    "threading.Thread(target=noise, daemon=True).start()",
    "runpy.run_module('steermoe_engine', run_name='__main__')",
  ].join("\n");
  writeFileSync(noisy, `#!/bin/sh\nexec ${PYTHON} -c '${code.replaceAll("'", "'\\''")}'\n`);
  chmodSync(noisy, 0o755);
  const engine = await Engine.start({ python: noisy });
  try {
    await engine.load({ source: model });
    const [sample] = await engine.generate([[{ role: "user", content: "Hello" }]], [1], {
      maxNewTokens: 8,
      temperature: 1,
      topP: 1,
    });
    assert.equal(sample!.generatedIds.data.length, 8);
    assert.match(engine.recentLog(), /noise/);
  } finally {
    await engine.close();
  }
});

test("the engine exits when the TypeScript process dies", async () => {
  const script = `
    import { Engine } from ${JSON.stringify(join(PACKAGE_ROOT, "dist", "src", "components", "engine", "client.js"))};
    const engine = await Engine.start();
    console.log(engine.pid);
    setInterval(() => {}, 1000);
  `;
  const parent = spawn(process.execPath, ["--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const pid = await new Promise<number>((resolve) =>
    parent.stdout.once("data", (d: Buffer) => resolve(Number(d.toString()))),
  );
  assert.ok(alive(pid));
  parent.kill("SIGKILL");
  // Generous: on a loaded machine the engine's exit (torch teardown) can take seconds.
  assert.ok(await until(() => !alive(pid), 30_000), "engine still running 30 s after its parent died");
});
