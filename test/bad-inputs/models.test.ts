// Model folders the engine cannot use, and conversations a model's chat template rejects: the
// engine's error names the file or the sample, in one line; an engine that dies says how, and
// where its last output is. One tiny model is built per file.
import assert from "node:assert/strict";
import { chmodSync, cpSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { flipattackRecords, run, tempDir } from "../helpers.js";
import { writeNpy } from "../../src/components/io/tables.js";
import { badInputs } from "./harness.js";
import { file, tinyModel } from "./fixtures.js";

/** A copy of the tiny model in `dir`/m, changed by `damage`. */
async function modelCopy(dir: string, damage: (model: string) => void): Promise<string> {
  const copy = join(dir, "m");
  cpSync(await tinyModel(), copy, { recursive: true });
  damage(copy);
  return "m";
}
const half = (path: string) => truncateSync(path, Math.floor(readFileSync(path).length / 2));

badInputs("models", [
  {
    name: "a model whose weights file is cut short",
    setup: async (dir) => [
      "inspect",
      "--model",
      await modelCopy(dir, (m) => half(join(m, "model.safetensors"))),
    ],
    expect: /m\/model\.safetensors: incomplete or damaged safetensors file \(.*not a weights file\?\)/,
  },
  {
    name: "a model folder without tokenizer files",
    setup: async (dir) => [
      "inspect",
      "--model",
      await modelCopy(dir, (m) =>
        ["tokenizer.json", "tokenizer_config.json"].forEach((f) => rmSync(join(m, f))),
      ),
    ],
    expect:
      /m has no tokenizer files \(tokenizer\.json, tokenizer\.model, vocab\.json, tokenizer_config\.json\)/,
  },
  {
    name: "a conversation the model's chat template rejects names its sample",
    setup: async (dir) => {
      const model = await modelCopy(dir, (m) =>
        writeFileSync(
          join(m, "chat_template.jinja"),
          "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}" +
            "{% endif %}{{ m['content'] }}{% endfor %}",
        ),
      );
      const data = file(dir, "d.json", JSON.stringify(flipattackRecords(4)));
      return [
        "analyze",
        "--run",
        "run",
        "--model",
        model,
        "--data",
        data,
        "--batch-size",
        "4",
        "--qc",
        "off",
      ];
    },
    expect:
      /sample 0:safe field messages: the model's chat template or tokenizer rejects it \(.*no system role\)/,
  },
  ...[
    [
      "a JSON steering map",
      "s.json",
      (path: string) => writeFileSync(path, '{"biases": [{"layer": 1, "expert": 2, "bias": -1e300}]}'),
    ],
    [
      "a float64 .npy steering map",
      "s.npy",
      (path: string) => {
        const map = new Float64Array(2 * 8);
        map[8 + 2] = -1e300;
        writeNpy(path, map, [2, 8]);
      },
    ],
  ].map(([what, name, write]) => ({
    name: `${what as string} with a bias past float32's range`,
    setup: async (dir: string) => {
      (write as (path: string) => void)(join(dir, name as string));
      writeFileSync(join(dir, "i.jsonl"), '{"messages": [{"role": "user", "content": "hi"}]}\n');
      const model = await modelCopy(dir, () => {});
      return ["generate", "--model", model, "--input", "i.jsonl", "--out", "o", "--steer", name as string];
    },
    expect:
      /^steermoe: --steer: layer 1 expert 2: bias -1e\+300 is beyond float32's range \(±3\.4e38\), in which the router adds it; write "inf" or "-inf"/,
    absent: ["o"],
  })),
  {
    name: "eval: a jailbreak prompt over --max-prompt-tokens, with advice eval can take",
    setup: async (dir) => {
      const records = flipattackRecords(2);
      records[1]!.all_prompt = [{ role: "user", content: "many words ".repeat(200) }];
      const data = file(dir, "jb.json", JSON.stringify(records));
      const model = await modelCopy(dir, () => {});
      return ["eval", "--model", model, "--out", "o", "--jailbreaks", data, "--max-prompt-tokens", "100"];
    },
    expect:
      /^steermoe: jb\.json record id 1 \(jailbreak prompt\): the prompt is \d+ tokens, over the limit of 100 \(--max-prompt-tokens 100\); shorten it or raise --max-prompt-tokens$/,
    absent: ["o"],
  },
]);

test("models: an engine that dies says how in one line, its last output kept in a log", (t) => {
  const dir = tempDir(t);
  const python = join(dir, "python");
  writeFileSync(
    python,
    '#!/bin/sh\necho "Traceback (most recent call last):" >&2\necho "boom" >&2\nexit 3\n',
  );
  chmodSync(python, 0o755);
  const result = run(["inspect", "--model", dir], { env: { ...process.env, STEERMOE_PYTHON: python } });
  assert.equal(result.status, 1);
  const lines = result.stderr.trim().split("\n");
  assert.equal(lines.length, 1, result.stderr);
  const log = /^steermoe: the engine exited with code 3 \(log: (\S+)\)$/.exec(lines[0]!);
  assert.ok(log, lines[0]);
  t.after(() => rmSync(log[1]!, { force: true }));
  assert.match(readFileSync(log[1]!, "utf8"), /Traceback \(most recent call last\):\nboom/);
});
