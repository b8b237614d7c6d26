// Data files that are not what their command reads: named by file, record and field, before any
// engine starts and before the run folder exists.
import { execFileSync } from "node:child_process";
import { mkdirSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { flipattackRecords } from "../helpers.js";
import { badInputs } from "./harness.js";
import { file } from "./fixtures.js";

type Records = ReturnType<typeof flipattackRecords>;

/** analyze on a dataset: 8 good records, changed by `damage`, written as JSON to d.json. */
function analyzeOn(damage: (records: Records) => unknown) {
  return (dir: string) => {
    const text = JSON.stringify(damage(flipattackRecords(8)));
    return [
      "analyze",
      "--run",
      "run",
      "--model",
      "m",
      "--batch-size",
      "4",
      "--data",
      file(dir, "d.json", text),
    ];
  };
}
const analyzeText =
  (text: string, name = "d.json") =>
  (dir: string) => ["analyze", "--run", "run", "--model", "m", "--data", file(dir, name, text)];

badInputs("data", [
  {
    name: "a data file that is not there",
    setup: () => ["analyze", "--run", "run", "--model", "m", "--data", "nofile.json"],
    expect: /nofile\.json: no such file/,
    absent: ["run"],
  },
  {
    name: "a data folder",
    setup: (dir) => {
      mkdirSync(join(dir, "dd"));
      return ["analyze", "--run", "run", "--model", "m", "--data", "dd"];
    },
    expect: /dd: a folder, not a file/,
  },
  {
    name: "a device that never ends (/dev/zero)",
    setup: () => ["analyze", "--run", "run", "--model", "m", "--data", "/dev/zero"],
    expect: /^steermoe: \/dev\/zero: not a regular file \(a pipe or a device\); write it to a file first$/,
    absent: ["run"],
  },
  {
    name: "a FIFO no one writes to",
    setup: (dir) => {
      execFileSync("mkfifo", [join(dir, "fifo.json")]);
      return ["analyze", "--run", "run", "--model", "m", "--data", "fifo.json"];
    },
    expect: /fifo\.json: not a regular file \(a pipe or a device\)/,
    absent: ["run"],
  },
  {
    name: "a data file over the size limit (sparse: no disk used)",
    setup: (dir) => {
      const big = join(dir, "big.jsonl");
      writeFileSync(big, "");
      truncateSync(big, 2 ** 30 + 1);
      return ["analyze", "--run", "run", "--model", "m", "--data", "big.jsonl"];
    },
    expect: /big\.jsonl: 1\.0 GiB, over the 1 GiB limit for a file; split it/,
    absent: ["run"],
  },
  {
    name: "JSON cut short",
    setup: analyzeText("[{"),
    expect: /d\.json: not valid JSON/,
    absent: ["run"],
  },
  {
    name: "an empty file",
    setup: analyzeText(""),
    expect: /d\.json: the file has no records/,
  },
  {
    name: "a JSONL file with a broken line",
    setup: (dir) =>
      analyzeText(
        flipattackRecords(8)
          .map((r) => JSON.stringify(r))
          .join("\n") + "\n{bad\n",
        "d.jsonl",
      )(dir),
    expect: /d\.jsonl line 9: not valid JSON/,
    absent: ["run"],
  },
  {
    name: "eval: two --benign prompts with one id",
    setup: (dir) => [
      ...["eval", "--model", "m", "--out", "o", "--benign"],
      file(
        dir,
        "b.json",
        JSON.stringify([
          { id: 1, prompt: "hello" },
          { id: 1, prompt: "hi" },
        ]),
      ),
    ],
    expect: /b\.json record 1 field id: duplicate id 1 \(also record 0\); ids must be unique/,
    absent: ["o"],
  },
  {
    name: "eval: a benchmark file of one's own with one id twice",
    setup: (dir) => [
      ...["eval", "--model", "m", "--out", "o", "--benchmark"],
      `mine=${file(dir, "b.csv", "id,prompt\n7,a\n7,b\n")},prompt=prompt,id=id`,
    ],
    expect: /b\.csv row 2 \(line 3\) column id: duplicate id 7 \(also row 1\); ids must be unique/,
    absent: ["o"],
  },
  {
    name: "jailbreak: a goals CSV naming its goal column twice",
    setup: (dir) => ["jailbreak", "--goals", file(dir, "g.csv", "goal,goal\na b,c d\n"), "--out", "p.json"],
    expect: /^steermoe: g\.csv line 1: column goal appears twice in the header$/,
    absent: ["p.json"],
  },
  {
    name: "a record without its goal",
    setup: analyzeOn((records) => records.map((r, i) => (i === 1 ? { ...r, goal: undefined } : r))),
    expect: /d\.json record 1 field goal: missing/,
    absent: ["run"],
  },
  {
    name: "a message with an unknown role",
    setup: analyzeOn((records) => {
      records[2]!.all_prompt[1]!.role = "robot";
      return records;
    }),
    expect:
      /d\.json record 2 field all_prompt\[1\]\.role: expected "system", "user" or "assistant", got "robot"/,
  },
  {
    name: "message content that is not text",
    setup: analyzeOn((records) => {
      (records[2]!.all_prompt[1] as { content: unknown }).content = 5;
      return records;
    }),
    expect: /d\.json record 2 field all_prompt\[1\]\.content: expected a string, got number/,
  },
  {
    name: "two records with one id",
    setup: analyzeOn((records) => records.map((r, i) => (i === 2 ? { ...r, id: 1 } : r))),
    expect: /d\.json record 2 field id: duplicate id 1/,
  },
  {
    name: "an empty message list",
    setup: analyzeOn((records) => records.map((r, i) => (i === 2 ? { ...r, all_prompt: [] } : r))),
    expect: /d\.json record 2 field all_prompt: empty message list/,
  },
  {
    name: "a training conversation that does not end with the target",
    setup: (dir) => {
      const data = file(
        dir,
        "c.jsonl",
        JSON.stringify({ id: "a", messages: [{ role: "user", content: "hi" }] }),
      );
      return ["train", "--data", data, "--model", "m", "--out", "o", "--experts", "all"];
    },
    expect: /c\.jsonl record 0 \(line 1\) field messages: must end with an assistant message/,
    absent: ["o"],
  },
]);
