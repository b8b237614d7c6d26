// Text that cannot be what it claims (bytes that are not UTF-8, lone surrogates, ids JSON would
// merge, verdict fields that are not 0/1), and hostile judge endpoints (a 401 repeating the key,
// 500s, garbage, a server that hangs, URLs carrying credentials), through the real CLI.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { flipattackRecords, freePort, PACKAGE_ROOT, run, tempDir } from "../helpers.js";
import { badInputs } from "./harness.js";

const ORGANISM = join(PACKAGE_ROOT, "organism", "model");
const KEY_ENV = "STEERMOE_TEST_JUDGE_KEY";
const KEY = "kq-7Zq8v3N1x7TtKQ2";
const UNSET_ENV = "STEERMOE_TEST_UNSET_KEY";
const PASSWORD = "pw-s3cret-9";
// A signature as URLs carry them: percent-encoded on the wire, so a server echoing its request
// path repeats that form, and a decoded one anywhere else.
const QUERY_KEY = "qk-Secret%2F123456%3D%3D";
const BASIC = Buffer.from(`judge:${PASSWORD}`).toString("base64");
const URL_SECRETS = [PASSWORD, QUERY_KEY, decodeURIComponent(QUERY_KEY), QUERY_KEY.toLowerCase(), BASIC];

let server: ChildProcess | undefined;
let port = 0;

before(async () => {
  const script = join(dirname(fileURLToPath(import.meta.url)), "judge-server.js");
  server = spawn(process.execPath, [script, "--serve"], { stdio: ["ignore", "pipe", "inherit"] });
  port = await new Promise<number>((resolve, reject) => {
    server!.stdout!.once("data", (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
    server!.once("exit", (code) => reject(new Error(`judge server exited with ${code}`)));
  });
});

after(() => {
  server?.kill();
});

/** The loopback judge's base URL for behaviour `mode`; `id` keeps each case's request count apart. */
const judgeUrl = (mode: string, id: string, auth = "", query = "") =>
  `http://${auth}127.0.0.1:${port}/${mode}/${id}/v1${query}`;
const CREDENTIALS = `judge:${PASSWORD}@`;
const QUERY = `?api-key=${QUERY_KEY}&api-version=2024-06-01`;

const jsonl = (records: unknown[]) => records.map((r) => JSON.stringify(r)).join("\n") + "\n";

/** `text` as bytes with `marker` replaced by `raw` (bytes that are not UTF-8), and where they start. */
function withBytes(text: string, marker: string, raw: number[]): { bytes: Buffer; offset: number } {
  const at = text.indexOf(marker);
  const head = Buffer.from(text.slice(0, at));
  return {
    bytes: Buffer.concat([head, Buffer.from(raw), Buffer.from(text.slice(at + marker.length))]),
    offset: head.length,
  };
}

const records = (edit: (r: Record<string, unknown>[]) => void = () => {}) => {
  const list: Record<string, unknown>[] = flipattackRecords(2);
  edit(list);
  return list;
};

/** analyze on a file written into the case's folder; the model is the organism (never loaded). */
function analyze(dir: string, file: string, data: string | Buffer, ...flags: string[]): string[] {
  writeFileSync(join(dir, file), data);
  return ["analyze", "--run", join(dir, "run"), "--data", join(dir, file), "--model", ORGANISM, ...flags];
}

const withJudge = (url: string, keyEnv = KEY_ENV) => [
  "--judge",
  "openai",
  "--judge-url",
  url,
  "--judge-model",
  "judge-model",
  "--judge-key-env",
  keyEnv,
];
const judged = (dir: string, url: string, flags: string[] = [], keyEnv = KEY_ENV) =>
  analyze(dir, "d.jsonl", jsonl(records()), "--batch-size", "2", ...withJudge(url, keyEnv), ...flags);

const badGoal = records((r) => (r[1]!.goal = "Write a story about a café BAD"));
const invalidJsonl = withBytes(jsonl(badGoal), "BAD", [0xff]);
const cutJson = withBytes(JSON.stringify(badGoal), "BAD", [0xe2, 0x82]);
const csv = (cell: string) =>
  `id,goal,all_prompt,judge_success_gpt4\n0,Plain request,Wrapped request,1\n1,Other request,Wrapped ${cell},1\n`;
const cesuCsv = withBytes(csv("BAD"), "BAD", [0xed, 0xa0, 0x80]);
const overlong = withBytes(jsonl(badGoal), "BAD", [0xc0, 0xaf]);
const conversations = withBytes(
  jsonl([{ id: "c", messages: [{ role: "user", content: "Grüße BAD" }] }]),
  "BAD",
  [0xfc],
);
const template = withBytes("Grade {response}\nto {forbidden_prompt} BAD", "BAD", [0x80]);
const ENCODING_FIX = "save the file as UTF-8, or read it with --encoding latin1 or utf8-replace";
const RUN = ["run"];

badInputs("text", [
  {
    name: "data: a byte that is not UTF-8 in a JSONL goal",
    setup: (dir) => analyze(dir, "d.jsonl", invalidJsonl.bytes),
    expect: new RegExp(
      `d\\.jsonl: invalid UTF-8 at byte ${invalidJsonl.offset} \\(line 2\\); ${ENCODING_FIX}`,
    ),
    absent: RUN,
  },
  {
    name: "data: a multi-byte character cut short inside a JSON array",
    setup: (dir) => analyze(dir, "d.json", cutJson.bytes),
    expect: new RegExp(`d\\.json: invalid UTF-8 at byte ${cutJson.offset} \\(line 1\\)`),
    absent: RUN,
  },
  {
    name: "data: a UTF-16 surrogate encoded as UTF-8 (CESU-8) in a CSV file",
    setup: (dir) => analyze(dir, "d.csv", cesuCsv.bytes),
    expect: new RegExp(`d\\.csv: invalid UTF-8 at byte ${cesuCsv.offset} \\(line 3\\)`),
    absent: RUN,
  },
  {
    name: "data: an overlong encoding of '/'",
    setup: (dir) => analyze(dir, "d.jsonl", overlong.bytes, "--encoding", "utf8"),
    expect: new RegExp(`d\\.jsonl: invalid UTF-8 at byte ${overlong.offset} \\(line 2\\)`),
    absent: RUN,
  },
  {
    name: "data: a lone high surrogate escape in a goal",
    setup: (dir) => analyze(dir, "d.jsonl", jsonl(records((r) => (r[1]!.goal = "Write a \ud800 story")))),
    expect: /d\.jsonl record 1 \(line 2\) field goal: a lone surrogate \\ud800 is not text/,
    absent: RUN,
  },
  {
    name: "data: a lone low surrogate in a message's content",
    setup: (dir) =>
      analyze(
        dir,
        "d.json",
        JSON.stringify(
          records((r) => (r[0]!.all_prompt = [{ role: "user", content: "TASK is \udc00 'story'" }])),
        ),
      ),
    expect: /d\.json record 0 field all_prompt\[0\]\.content: a lone surrogate \\udc00 is not text/,
    absent: RUN,
  },
  {
    name: "data: ids past 2^53 that are the same id, digit for digit",
    setup: (dir) =>
      analyze(dir, "d.jsonl", jsonl(records()).replace(/"id":[01],/g, '"id":10000000000000001,')),
    expect: /d\.jsonl record 1 \(line 2\) field id: duplicate id 10000000000000001 \(also record 0\)/,
    absent: RUN,
  },
  {
    name: "data: judge_success_gpt4 is 2",
    setup: (dir) => analyze(dir, "d.jsonl", jsonl(records((r) => (r[1]!.judge_success_gpt4 = 2)))),
    expect:
      /d\.jsonl record 1 \(line 2\) field judge_success_gpt4: got 2; expected 1, "1" \(kept\) or 0, "0" \(dropped\)$/,
    absent: RUN,
  },
  {
    name: "data: judge_success_gpt4 is yes in a CSV file",
    setup: (dir) => analyze(dir, "d.csv", csv("x").replace(/,1\n$/, ",yes\n")),
    expect: /d\.csv row 2 \(line 3\) field judge_success_gpt4: got "yes"/,
    absent: RUN,
  },
  {
    name: "data: a UTF-16 file",
    setup: (dir) => analyze(dir, "d.json", Buffer.from("\ufeff" + JSON.stringify(records()), "utf16le")),
    expect: /d\.json: UTF-16 text \(it starts with a UTF-16 byte order mark\), not UTF-8/,
    absent: RUN,
  },
  {
    name: "generate: a conversations file that is not UTF-8",
    setup: (dir) => {
      writeFileSync(join(dir, "c.jsonl"), conversations.bytes);
      return ["generate", "--input", join(dir, "c.jsonl"), "--out", join(dir, "out"), "--model", ORGANISM];
    },
    expect: new RegExp(
      `c\\.jsonl: invalid UTF-8 at byte ${conversations.offset} \\(line 1\\); ${ENCODING_FIX}`,
    ),
    absent: ["out"],
  },
  {
    name: "flags: --encoding that is not one of the encodings",
    setup: (dir) => analyze(dir, "d.jsonl", jsonl(records()), "--encoding", "utf16"),
    expect: /--encoding.*utf16.*utf8, utf8-replace, latin1/,
    absent: RUN,
  },
]);

const keyEnv = { [KEY_ENV]: KEY };
const noKey = { [KEY_ENV]: undefined, [UNSET_ENV]: undefined };
const endpoint = (mode: string, id: string) =>
  `judge endpoint http://127\\.0\\.0\\.1:\\d+/${mode}/${id}/v1/chat/completions`;

badInputs("judge", [
  {
    name: "a 401 whose body repeats the key",
    setup: (dir) => judged(dir, judgeUrl("echo401", "a")),
    env: keyEnv,
    expect: new RegExp(
      `${endpoint("echo401", "a")} answered HTTP 401 \\(check the key in ${KEY_ENV}\\): .*Incorrect API key provided: \\[redacted\\]`,
    ),
    secrets: [KEY],
    absent: RUN,
  },
  {
    name: "a 401 to a URL carrying user:password and a key in its query",
    setup: (dir) => judged(dir, judgeUrl("echo401", "b", CREDENTIALS, QUERY), [], UNSET_ENV),
    env: noKey,
    expect: new RegExp(
      `^steermoe: ${endpoint("echo401", "b")} answered HTTP 401 \\(check user:password in the URL\\): .*Basic \\[redacted\\]`,
    ),
    secrets: URL_SECRETS,
    absent: RUN,
  },
  {
    name: "a 500 on every attempt, its body repeating the key",
    setup: (dir) => judged(dir, judgeUrl("fail500", "c"), ["--set", "judge.maxAttempts=1"]),
    env: keyEnv,
    expect: new RegExp(
      `${endpoint("fail500", "c")} failed 1 attempt in \\d+ s: HTTP 500; last answer: server error`,
    ),
    secrets: [KEY],
    absent: RUN,
  },
  {
    name: "garbage (HTML repeating the key) for an answer",
    setup: (dir) => judged(dir, judgeUrl("garbage", "d")),
    env: keyEnv,
    expect: new RegExp(
      `${endpoint("garbage", "d")} answered something that is not \\{is_refusal, confidence, reason\\}: <html><body>Welcome!`,
    ),
    secrets: [KEY],
    absent: RUN,
  },
  {
    name: "a server that never answers, with a short --judge-timeout",
    setup: (dir) =>
      judged(dir, judgeUrl("hang", "e"), ["--judge-timeout", "0.5", "--set", "judge.maxAttempts=1"]),
    env: keyEnv,
    expect: new RegExp(`${endpoint("hang", "e")} failed 1 attempt in \\d+ s: no answer within 0\\.5 s`),
    secrets: [KEY],
    absent: RUN,
  },
  {
    name: "a 404: wrong path or model",
    setup: (dir) => judged(dir, judgeUrl("nowhere", "f")),
    env: keyEnv,
    expect: /answered HTTP 404 \(check --judge-url and --judge-model\)/,
    absent: RUN,
  },
  {
    name: "nothing listening at the URL",
    setup: async (dir) =>
      judged(dir, `http://${CREDENTIALS}127.0.0.1:${await freePort()}/v1${QUERY}`, [], UNSET_ENV),
    env: noKey,
    expect: /judge endpoint http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions is unreachable \(ECONNREFUSED\)/,
    secrets: URL_SECRETS,
    absent: RUN,
  },
  {
    name: "user:password in the URL and a key in the variable",
    setup: (dir) => judged(dir, judgeUrl("ok", "g", CREDENTIALS)),
    env: keyEnv,
    expect: new RegExp(
      `the judge URL http://127\\.0\\.0\\.1:\\d+/ok/g/v1 carries user:password and ${KEY_ENV} holds an API key`,
    ),
    secrets: [KEY, PASSWORD],
    absent: RUN,
  },
  {
    name: "the key variable unset, the URL carrying a key in its query",
    setup: (dir) => judged(dir, judgeUrl("ok", "h", "", QUERY), [], UNSET_ENV),
    env: noKey,
    expect: new RegExp(
      `environment variable ${UNSET_ENV} is not set: export the API key for http://127\\.0\\.0\\.1:\\d+/ok/h/v1 in it`,
    ),
    secrets: URL_SECRETS,
    absent: RUN,
  },
  {
    name: "--judge-url that is not http, carrying a password",
    setup: (dir) => judged(dir, `ftp://${CREDENTIALS}example.org/v1`),
    env: keyEnv,
    expect: /--judge-url/,
    secrets: [PASSWORD, KEY],
    absent: RUN,
  },
  {
    name: "a key variable with a line break inside the key",
    setup: (dir) => judged(dir, judgeUrl("ok", "l")),
    env: { [KEY_ENV]: `${KEY}\n${KEY}` },
    expect: new RegExp(`environment variable ${KEY_ENV} holds a character an HTTP header cannot carry`),
    secrets: [KEY],
    absent: RUN,
  },
  {
    name: "a key variable with a newline after the key (trimmed: the server gets the key)",
    setup: (dir) => judged(dir, judgeUrl("echo401", "m")),
    env: { [KEY_ENV]: `${KEY}\n` },
    expect: new RegExp(
      `${endpoint("echo401", "m")} answered HTTP 401 .*Incorrect API key provided: \\[redacted\\]\\.`,
    ),
    secrets: [KEY],
    absent: RUN,
  },
  {
    name: "a judge template that is not UTF-8",
    setup: (dir) => {
      writeFileSync(join(dir, "t.txt"), template.bytes);
      const judge = withJudge(judgeUrl("ok", "n")).map((flag) => (flag === "openai" ? "strongreject" : flag));
      return analyze(
        dir,
        "d.jsonl",
        jsonl(records()),
        ...judge,
        "--batch-size",
        "2",
        "--judge-template",
        join(dir, "t.txt"),
      );
    },
    env: keyEnv,
    expect: new RegExp(
      `t\\.txt: invalid UTF-8 at byte ${template.offset} \\(line 2\\); save the template as UTF-8`,
    ),
    absent: RUN,
  },
  {
    name: "user:password in the URL that is not valid %-encoding",
    setup: (dir) => judged(dir, judgeUrl("ok", "o", "judge:pw%E0-s3cret@"), [], UNSET_ENV),
    env: noKey,
    expect:
      /the judge URL http:\/\/127\.0\.0\.1:\d+\/ok\/o\/v1 has user:password that is not valid %-encoding/,
    secrets: ["s3cret"],
    absent: RUN,
  },
  {
    name: "--judge-timeout 0",
    setup: (dir) => judged(dir, judgeUrl("ok", "i"), ["--judge-timeout", "0"]),
    env: keyEnv,
    expect: /--judge-timeout.*expected a number of seconds > 0/,
    absent: RUN,
  },
]);

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isFile());
}

const portless = (text: string) =>
  text.replaceAll(`127.0.0.1:${port}/`, "127.0.0.1:PORT/").replace(/ in \d+ s:/, " in N s:");

test("judge: a server that hangs is retried, a waiting line per retry, then one error line", (t) => {
  const dir = tempDir(t);
  const args = judged(dir, judgeUrl("hang", "j"), ["--judge-timeout", "0.5", "--set", "judge.maxAttempts=2"]);
  const result = run(args, { env: { ...process.env, ...keyEnv } });
  assert.equal(result.status, 1, result.stderr);
  assert.deepEqual(portless(result.stderr).trim().split("\n"), [
    "waiting for judge endpoint http://127.0.0.1:PORT/hang/j/v1 (attempt 2/2, 0.5 s timeout)",
    "steermoe: judge endpoint http://127.0.0.1:PORT/hang/j/v1/chat/completions failed 2 attempts in N s: " +
      "2× no answer within 0.5 s",
  ]);
});

test("judge: a reset, a dropped connection, then silence: the one error line tells every attempt in words", (t) => {
  const dir = tempDir(t);
  const args = judged(dir, judgeUrl("reset", "r"), [
    "--judge-timeout",
    "0.5",
    "--set",
    "judge.maxAttempts=3",
  ]);
  const result = run(args, { env: { ...process.env, ...keyEnv } });
  assert.equal(result.status, 1, result.stderr);
  assert.equal(
    portless(result.stderr).trim().split("\n").at(-1),
    "steermoe: judge endpoint http://127.0.0.1:PORT/reset/r/v1/chat/completions failed 3 attempts in N s: " +
      "connection reset by the server, the server closed the connection before answering, no answer within 0.5 s",
  );
  assert.ok(!existsSync(join(dir, "run")));
});

test("judge: a URL with user:password and a query is asked with both, recovers from a 500, and no file or line holds them", (t) => {
  const dir = tempDir(t);
  const out = join(dir, "eval");
  const url = judgeUrl("strict", "k", CREDENTIALS, QUERY);
  const evalArgs = ["eval", "--limit", "1", "--max-new-tokens", "4", "--out", out];
  const result = run([...evalArgs, "--model", `organism=${ORGANISM}`, ...withJudge(url, UNSET_ENV)], {
    env: { ...process.env, ...noKey },
  });
  assert.equal(result.status, 0, result.stderr);
  assert.match(
    portless(result.stderr),
    /^waiting for judge endpoint http:\/\/127\.0\.0\.1:PORT\/strict\/k\/v1 \(attempt 2\/5, 60 s timeout\)$/m,
  );
  const stored = JSON.parse(readFileSync(join(out, "eval_config.json"), "utf8")) as {
    settings: { judge: { baseUrl: string } };
    left_out?: string;
  };
  assert.equal(stored.settings.judge.baseUrl, judgeUrl("strict", "k"));
  assert.match(stored.left_out ?? "", /user:password and query strings of URLs/);
  for (const secret of URL_SECRETS) {
    assert.ok(!result.stderr.includes(secret), "a secret reached stderr");
    for (const file of filesUnder(dir))
      assert.ok(!readFileSync(file).includes(secret), `a secret in ${file}`);
  }
});
