// --config files that cannot be read, parsed or used: named, before any engine starts.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { flipattackRecords } from "../helpers.js";
import { badInputs } from "./harness.js";
import { file } from "./fixtures.js";

/** analyze with a good dataset and the config file `name` holding `text`. */
function withConfig(name: string, text: string) {
  return (dir: string) => {
    file(dir, "data.json", JSON.stringify(flipattackRecords(8)));
    return ["analyze", "--run", "run", "--config", file(dir, name, text)];
  };
}
const settings = (extra: object) =>
  JSON.stringify({ model: { source: "m" }, data: { file: "data.json" }, ...extra });

badInputs("config", [
  {
    name: "a config file that is not there",
    setup: () => ["analyze", "--run", "run", "--config", "nofile.json"],
    expect: /nofile\.json: no such config file/,
    absent: ["run"],
  },
  {
    name: "a config folder",
    setup: (dir) => {
      mkdirSync(join(dir, "conf"));
      return ["analyze", "--run", "run", "--config", "conf"];
    },
    expect: /conf: a folder, not a config file/,
  },
  {
    name: "JSON that does not parse",
    setup: withConfig("c.json", "{x"),
    expect: /c\.json: not valid JSON/,
    absent: ["run"],
  },
  {
    name: "an empty JSON file",
    setup: withConfig("c.json", ""),
    expect: /c\.json: not valid JSON/,
  },
  {
    name: "YAML that does not parse",
    setup: withConfig("c.yaml", "a: [\n"),
    expect: /c\.yaml: not valid YAML/,
  },
  {
    name: "YAML with a !!python tag",
    setup: withConfig("c.yaml", 'model:\n  source: !!python/object/apply:os.system ["echo hi"]\n'),
    expect:
      /^steermoe: c\.yaml: not valid YAML \(Unresolved tag: tag:yaml\.org,2002:python\/object\/apply:os\.system at line 2, column 11\)$/,
    absent: ["run"],
  },
  {
    name: "a config file that is not UTF-8",
    setup: (dir) => {
      writeFileSync(join(dir, "c.yaml"), Buffer.from([0x6d, 0x3a, 0x20, 0xff, 0x0a]));
      return ["analyze", "--run", "run", "--config", "c.yaml"];
    },
    expect: /^steermoe: c\.yaml: .*UTF-8/,
    absent: ["run"],
  },
  {
    name: "a list instead of an object",
    setup: withConfig("c.json", "[]"),
    expect: /c\.json: a config file holds one object of settings/,
  },
  {
    name: "a key no setting has",
    setup: withConfig("c.json", settings({ bogus: 1 })),
    expect: /analyze settings Unrecognized key: "bogus"/,
    absent: ["run"],
  },
  {
    name: "a setting of the wrong type",
    setup: withConfig("c.json", settings({ batch: { size: "big" } })),
    expect: /analyze settings field batch\.size: .*expected number/,
    absent: ["run"],
  },
  {
    name: "a command section that is not an object",
    setup: withConfig("c.json", JSON.stringify({ model: "m", analyze: 3 })),
    expect: /c\.json: the analyze section is not an object of settings/,
  },
  {
    name: "a shared model that is neither a path nor settings",
    setup: withConfig("c.json", JSON.stringify({ model: 5, analyze: { data: { file: "data.json" } } })),
    expect: /c\.json: model is neither a path nor an object of model settings/,
  },
  {
    name: "a bad key inside the command's section",
    setup: withConfig(
      "c.json",
      JSON.stringify({ model: "m", analyze: { data: { file: "data.json" }, bogus: 1 } }),
    ),
    expect: /analyze settings Unrecognized key: "bogus"/,
  },
]);
