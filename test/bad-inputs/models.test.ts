// Model folders the engine cannot use, and conversations a model's chat template rejects: the
// engine's error names the file or the sample, in one line. One tiny model is built per file.
import { cpSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { flipattackRecords } from "../helpers.js";
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
]);
