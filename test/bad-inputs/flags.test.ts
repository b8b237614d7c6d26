// Flags with a missing, impossible or contradictory value: refused before any engine starts.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { badInputs } from "./harness.js";
import { file } from "./fixtures.js";
import { flipattackRecords } from "../helpers.js";

/** analyze with a good dataset in `dir`, so only the flag under test is wrong. */
const analyze = (dir: string) => [
  "analyze",
  "--run",
  "run",
  "--model",
  "m",
  "--data",
  file(dir, "data.json", JSON.stringify(flipattackRecords(8))),
];
const conversation = (dir: string) =>
  file(
    dir,
    "c.jsonl",
    JSON.stringify({
      id: "a",
      messages: [
        { role: "user", content: "hi" },
        { role: "assistant", content: "ok" },
      ],
    }),
  );

/** A conversation to generate from: one user message. */
const prompt = (dir: string) =>
  file(dir, "p.jsonl", JSON.stringify({ id: "a", messages: [{ role: "user", content: "hi" }] }));

badInputs("flags", [
  {
    name: "--data with no value",
    setup: () => ["analyze", "--run", "run", "--data"],
    expect: /--data/,
    absent: ["run"],
  },
  {
    name: "--workers and --devices together",
    setup: () => ["analyze", "--run", "run", "--workers", "2", "--devices", "cpu,cpu"],
    expect: /--devices.*--workers|--workers.*--devices/,
    absent: ["run"],
  },
  {
    name: "--devices naming no device",
    setup: () => ["generate", "--devices", "cuda:0,gpu1"],
    expect: /--devices.*expected cpu, cuda or cuda:N/,
  },
  {
    name: "a server backend without --server",
    setup: () => ["analyze", "--run", "run", "--data", "d.json", "--model", "m", "--backend", "vllm"],
    expect: /^steermoe: --backend vllm needs --server URL/,
    absent: ["run"],
  },
  {
    name: "--server with the local backend",
    setup: () => [
      "generate",
      "--input",
      "i.jsonl",
      "--out",
      "out",
      "--model",
      "m",
      "--server",
      "http://h:8000",
    ],
    expect: /^steermoe: --server is for a server backend: add --backend vllm or --backend sglang$/,
    absent: ["out"],
  },
  {
    name: "--server that is not an http URL",
    setup: () => [
      "eval",
      "--out",
      "out",
      "--model",
      "m",
      "--backend",
      "sglang",
      "--server",
      "gpu-node:30000",
    ],
    expect: /^steermoe: --server gpu-node:30000: expected an http:\/\/ or https:\/\/ URL$/,
    absent: ["out"],
  },
  {
    name: "--api-key-env naming an unset variable",
    setup: () => [
      "analyze",
      "--run",
      "run",
      "--data",
      "d.json",
      "--model",
      "m",
      "--backend",
      "vllm",
      "--server",
      "http://127.0.0.1:9",
      "--api-key-env",
      "STEERMOE_UNSET_KEY_VAR",
    ],
    expect: /^steermoe: --api-key-env STEERMOE_UNSET_KEY_VAR: that environment variable is not set$/,
    absent: ["run"],
  },
  {
    name: "an unknown command",
    setup: () => ["analyse"],
    expect: /analyse/,
  },
  {
    name: "--batch-size 3 at safe ratio 0.5 would split a pair",
    setup: (dir) => [...analyze(dir), "--batch-size", "3"],
    expect: /batch size 3 with safe ratio 0\.5 gives 1\.5 safe samples per batch; a batch must hold whole/,
    absent: ["run"],
  },
  {
    name: "--safe-ratio whose share of the batch is not whole",
    setup: (dir) => [...analyze(dir), "--batch-size", "4", "--safe-ratio", "0.3"],
    expect: /batch size 4 with safe ratio 0\.3 gives 1\.2 safe samples/,
    absent: ["run"],
  },
  {
    name: "analyze --run given a file",
    setup: (dir) => [...analyze(dir), "--run", file(dir, "afile", "")],
    expect: /afile is a file, not a run folder/,
  },
  {
    name: "train --run given a file",
    setup: (dir) => ["train", "--run", file(dir, "afile", "")],
    expect: /afile is a file, not a run folder/,
  },
  {
    name: "train with both --run and --data",
    setup: (dir) => ["train", "--run", "run", "--data", conversation(dir), "--model", "m", "--out", "o"],
    expect: /--run DIR or --data FILE, not both/,
    absent: ["o"],
  },
  {
    name: "train with neither --run nor --data",
    setup: () => ["train"],
    expect: /train needs either --run DIR or --data FILE/,
  },
  {
    name: "train --data with an analysis-only expert set",
    setup: (dir) => ["train", "--data", conversation(dir), "--model", "m", "--out", "o"],
    expect: /--experts batch-union comes from an analysis run .*--experts all or a file/,
    absent: ["o"],
  },
  {
    name: "train --data without --model",
    setup: (dir) => ["train", "--data", conversation(dir), "--out", "o", "--experts", "all"],
    expect: /train --data needs --model/,
  },
  {
    name: "train --experts naming no file",
    setup: (dir) => [
      "train",
      "--data",
      conversation(dir),
      "--model",
      "m",
      "--out",
      "o",
      "--experts",
      "e.json",
    ],
    expect: /--experts e\.json: not batch-union, global or random, and no such file/,
  },
  {
    name: "train --experts file that is not JSON (the parser's excerpt spans lines)",
    setup: (dir) => {
      const experts = file(dir, "e.json", "xx\nyy\n");
      return ["train", "--data", conversation(dir), "--model", "m", "--out", "o", "--experts", experts];
    },
    expect: /e\.json: not valid JSON/,
  },
  {
    name: "train --experts file of the wrong shape",
    setup: (dir) => {
      const experts = file(dir, "e.json", '[{"layer": "a"}]');
      return ["train", "--data", conversation(dir), "--model", "m", "--out", "o", "--experts", experts];
    },
    expect: /e\.json field 0\.layer: .*expected a list of \{layer, expert\}/,
  },
  {
    name: "report --out given a folder",
    setup: (dir) => {
      mkdirSync(join(dir, "run"));
      file(join(dir, "run"), "config.json", '{"kind": "analyze"}');
      mkdirSync(join(dir, "od"));
      return ["report", "--run", "run", "--out", "od"];
    },
    expect: /od is a folder; give a file name for the output/,
  },
  {
    name: "generate --out given a file",
    setup: (dir) => {
      const input = file(
        dir,
        "c.jsonl",
        JSON.stringify({ id: "a", messages: [{ role: "user", content: "hi" }] }),
      );
      return ["generate", "--model", "m", "--input", input, "--out", file(dir, "gf", "keep me")];
    },
    expect: /gf is a file; give a folder for the output/,
    after: (dir) => assert.equal(readFileSync(join(dir, "gf"), "utf8"), "keep me"),
  },
  {
    name: "report --run given a file",
    setup: (dir) => ["report", "--run", file(dir, "afile", "")],
    expect: /afile is a file, not a run folder/,
  },
  {
    name: "--set without a value",
    setup: (dir) => [...analyze(dir), "--set", "nonsense"],
    expect: /--set nonsense: expected key\.path=value/,
  },
  {
    name: "--set of a setting that does not exist",
    setup: (dir) => [...analyze(dir), "--set", "foo.bar=1"],
    expect: /Unrecognized key: "foo"/,
  },
  {
    name: "--set through __proto__",
    setup: (dir) => [...analyze(dir), "--set", "__proto__.x=1"],
    expect: /^steermoe: --set __proto__\.x: __proto__ is not a setting$/,
  },
  {
    name: "--set through a nested __proto__",
    setup: (dir) => [...analyze(dir), "--set", "batch.__proto__.size=4"],
    expect: /^steermoe: --set batch\.__proto__\.size: __proto__ is not a setting$/,
  },
  {
    name: "--steer-sweep with a hexadecimal intensity",
    setup: (dir) => [
      ...["eval", "--model", "m", "--out", "o", "--steer", file(dir, "s.json", '{"biases": []}')],
      ...["--steer-sweep", "0,0x10"],
    ],
    expect: /--steer-sweep.*expected intensities >= 0 separated by commas, got '0x10'/,
    absent: ["o"],
  },
  {
    name: "--top without --steer-from",
    setup: () => ["eval", "--model", "m", "--out", "o", "--top", "5"],
    expect: /^steermoe: --top needs --steer-from$/,
    absent: ["o"],
  },
  {
    name: "--steer-scale without --steer-from",
    setup: () => ["generate", "--model", "m", "--input", "i.jsonl", "--out", "o", "--steer-scale", "2"],
    expect: /^steermoe: --steer-scale needs --steer-from$/,
    absent: ["o"],
  },
  ...[
    ['"NaN"', 'got "NaN"$'],
    ["null", "got null$"],
    ['"-5"', 'got "-5" \\(a number in quotes: write it without them\\)$'],
    ["1e400", "got Infinity \\(too large for a JSON number\\)$"],
  ].map(([bias, got]) => ({
    name: `a steering map whose bias is ${bias}`,
    setup: (dir: string) => [
      ...["generate", "--model", "m", "--input", "i.jsonl", "--out", "o", "--steer"],
      file(dir, "s.json", `{"biases": [{"layer": 0, "expert": 1, "bias": ${bias}}]}`),
    ],
    expect: new RegExp(
      `^steermoe: s\\.json field biases\\.0\\.bias: expected a number, "inf" \\(always selected\\) or "-inf" \\(never selected\\), ${got}`,
    ),
    absent: ["o"],
  })),
  {
    name: "tiny-model --arch llama (dense)",
    setup: () => ["tiny-model", "--arch", "llama", "--out", "t"],
    expect:
      /^steermoe: --arch llama: a dense model \(no experts\), which steermoe cannot analyse; choose an MoE type/,
    absent: ["t"],
  },
  {
    name: "two eval models of one name",
    setup: () => ["eval", "--model", "a=m1", "--model", "a=m2", "--out", "o"],
    expect: /^steermoe: --model: two models are named a; name each \(--model NAME=PATH\)$/,
    absent: ["o"],
  },
  {
    name: "--lr below zero",
    setup: () => ["train", "--run", "run", "--lr", "-1"],
    expect: /--lr <x>.*expected a number > 0/,
  },
  {
    name: "--epochs 0",
    setup: () => ["train", "--run", "run", "--epochs", "0"],
    expect: /--epochs <n>.*at least 1|>= 1/,
  },
  {
    name: "--compute-batch 0",
    setup: (dir) => [...analyze(dir), "--compute-batch", "0"],
    expect: /--compute-batch <n\|auto>.*>= 1/,
  },
  {
    name: "--device that is no device",
    setup: () => ["inspect", "--model", "m", "--device", "tpu"],
    expect: /--device <device>.*'tpu' is invalid/,
  },
  {
    name: "--steer given a folder",
    setup: (dir) => {
      mkdirSync(join(dir, "map.json"));
      return ["generate", "--model", "m", "--input", prompt(dir), "--out", "o", "--steer", "map.json"];
    },
    expect: /^steermoe: map\.json: a folder, not a steering map$/,
    absent: ["o"],
  },
  {
    name: "--steer map that is not UTF-8",
    setup: (dir) => {
      // "café" in Latin-1: é is one byte that UTF-8 does not allow there.
      writeFileSync(join(dir, "latin1.json"), Buffer.from('{"biases": [], "from": "caf\xe9"}', "latin1"));
      return ["generate", "--model", "m", "--input", prompt(dir), "--out", "o", "--steer", "latin1.json"];
    },
    expect: /^steermoe: latin1\.json: invalid UTF-8 at byte \d+ \(line 1\); save it as UTF-8$/,
    absent: ["o"],
  },
  {
    name: "generate --steer with --replay",
    setup: (dir) => [
      "generate",
      "--model",
      "m",
      "--input",
      conversation(dir),
      "--out",
      "o",
      "--replay",
      "--steer",
      file(dir, "s.json", '{"biases": []}'),
    ],
    expect: /^steermoe: --steer works with generation, not with --replay$/,
    absent: ["o"],
  },
  {
    name: "--temperature below zero",
    setup: (dir) => [...analyze(dir), "--temperature", "-1"],
    expect: /--temperature <t>.*>= 0/,
  },
]);
