// Reading text exactly: encodings, integers JSON cannot hold, torn multi-byte lines; and keeping
// credentials out of run files and messages.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { parquetWriteBuffer } from "hyparquet-writer";
import { z } from "zod";
import { loadBenchmark } from "../src/components/data/benchmarks.js";
import { loadPairs, presetMapping } from "../src/components/data/pairs.js";
import { readRecords } from "../src/components/data/records.js";
import { UserError } from "../src/components/errors.js";
import type { ModelInfo } from "../src/components/domain.js";
import { openRun } from "../src/components/io/run.js";
import { hideUrlCredentials, publicUrl, redact } from "../src/components/io/secrets.js";
import { readJsonlLog } from "../src/components/io/store.js";
import { OpenAIEndpoint, questionUrl, resolveEndpoint } from "../src/components/judge/http.js";
import { run, tempDir } from "./helpers.js";

test("records: ids past 2^53 stay apart and exact; digits in strings and other numbers are untouched", (t) => {
  const file = join(tempDir(t), "d.jsonl");
  const line = (id: string) =>
    `{"id":${id},"goal":"10000000000000001 apples","all_prompt":"x","judge_success_gpt4":1,"n":1.5e300}`;
  writeFileSync(
    file,
    [line("10000000000000000"), line("10000000000000001"), line("-9007199254740993")].join("\n"),
  );
  const { pairs } = loadPairs(file, presetMapping("flipattack"));
  assert.deepEqual(
    pairs.map((p) => p.pairId),
    ["10000000000000000", "10000000000000001", "-9007199254740993"],
  );
  const [first] = readRecords(file).records;
  assert.deepEqual(first!.value, {
    id: "10000000000000000",
    goal: "10000000000000001 apples",
    all_prompt: "x",
    judge_success_gpt4: 1,
    n: 1.5e300,
  });
});

test("records: --encoding latin1 and utf8-replace read what utf8 refuses; a real U+FFFD is not the culprit", (t) => {
  const file = join(tempDir(t), "d.jsonl");
  // "\uFFFD" written as UTF-8 (EF BF BD) is valid text; the 0xE9 after it is the first bad byte.
  writeFileSync(
    file,
    Buffer.concat([Buffer.from('{"goal":"\uFFFD caf'), Buffer.from([0xe9]), Buffer.from('"}\n')]),
  );
  assert.throws(
    () => readRecords(file),
    (err) =>
      err instanceof UserError &&
      err.message ===
        `${file}: invalid UTF-8 at byte 16 (line 1); ` +
          "save the file as UTF-8, or read it with --encoding latin1 or utf8-replace",
  );
  assert.deepEqual(readRecords(file, "utf8-replace").records[0]!.value, { goal: "\uFFFD caf\uFFFD" });
  assert.deepEqual(readRecords(file, "latin1").records[0]!.value, { goal: "ï¿½ café" });
});

test("jailbreak --encoding latin1: a Latin-1 goals file is read as what it is", (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, "goals.csv"), Buffer.from("goal\nMake cr\xe8me br\xfbl\xe9e\n", "latin1"));
  const args = ["jailbreak", "--goals", join(dir, "goals.csv"), "--out", join(dir, "pairs.json")];
  assert.match(run(args).stderr, /goals\.csv: invalid UTF-8 at byte 12 \(line 2\)/);
  const result = run([...args, "--encoding", "latin1"]);
  assert.equal(result.status, 0, result.stderr);
  const [pair] = JSON.parse(readFileSync(join(dir, "pairs.json"), "utf8")) as { goal: string }[];
  assert.equal(pair!.goal, "Make crème brûlée");
});

test("records: Parquet text cells that are not UTF-8 name row and column; INT64 ids follow the JSON rule", async (t) => {
  const file = join(tempDir(t), "mine.parquet");
  const write = (prompts: Uint8Array[]) =>
    writeFileSync(
      file,
      new Uint8Array(
        parquetWriteBuffer({
          columnData: [
            { name: "q", data: prompts, type: "BYTE_ARRAY" },
            { name: "key", data: [10000000000000000n, 10000000000000001n], type: "INT64" },
          ],
        }),
      ),
    );
  const spec = { name: "mine", file, prompt: "q", id: "key" };
  write([Buffer.from("How do I bake bread?"), Buffer.from([0x6f, 0x6b, 0xff])]);
  await assert.rejects(
    loadBenchmark(spec),
    new UserError(
      `${file} row 2 column q: invalid UTF-8 at byte 2 (line 1); ` +
        "save the file as UTF-8, or read it with --encoding latin1 or utf8-replace",
    ),
  );
  write([Buffer.from("How do I bake bread?"), Buffer.from("Tell me a joke")]);
  const { items } = await loadBenchmark(spec);
  assert.deepEqual(
    items.map((i) => [i.id, i.prompt]),
    [
      ["10000000000000000", "How do I bake bread?"],
      ["10000000000000001", "Tell me a joke"],
    ],
  );
});

test("store: a log torn inside a multi-byte character is cut at the last whole line", (t) => {
  const file = join(tempDir(t), "log.jsonl");
  const whole = '{"a":"日本"}\n';
  writeFileSync(
    file,
    Buffer.concat([Buffer.from(whole), Buffer.from('{"a":"日'), Buffer.from([0xe6, 0x9c])]),
  );
  assert.deepEqual(readJsonlLog(file, z.object({ a: z.string() })), [{ a: "日本" }]);
  assert.equal(readFileSync(file, "utf8"), whole);
});

test("secrets: URLs lose user:password and query; keys, Bearer and Basic credentials are redacted", () => {
  assert.equal(publicUrl("https://u:p@host.example/v1/?api-key=k#x"), "https://host.example/v1/");
  assert.equal(publicUrl("HTTP://Host/v1"), "HTTP://Host/v1", "a URL with nothing to hide stays as given");
  assert.equal(publicUrl("not a url"), "not a url");
  assert.equal(
    hideUrlCredentials("argument 'ftp://u:pw@h/x?k=1' is invalid"),
    "argument 'ftp://h/x' is invalid",
  );
  assert.equal(
    redact("key abcd1234 sent as Bearer abcd1234, Basic dTpw, sk-proj-0123456789abc", ["abcd1234", "ab"]),
    "key [redacted] sent as Bearer [redacted], Basic [redacted], [redacted]",
  );
});

test("endpoint URLs: the API path joins the base path once, the query stays on the request only", () => {
  const asked = (baseUrl: string) => {
    const endpoint = resolveEndpoint(OpenAIEndpoint.parse({ baseUrl, model: "m", apiKeyEnv: null }), "judge");
    return questionUrl(endpoint, { prompt: "p" });
  };
  assert.equal(asked("http://host.example"), "http://host.example/completions");
  assert.equal(
    asked("http://host.example/v1//?api-version=2024-06-01"),
    "http://host.example/v1/completions",
  );
});

const MODEL: ModelInfo = {
  source: "m",
  modelType: "olmoe",
  architecture: "OLMoE",
  className: "OlmoeForCausalLM",
  numLayers: 1,
  moeLayers: [0],
  numExperts: 2,
  topK: 1,
  normalizeTopk: false,
  routingFamily: "softmax_topk",
  expertGroups: null,
  sharedExperts: {},
  hiddenSize: 8,
  vocabSize: 16,
  dtype: "float32",
  device: "cpu",
  parameters: { total: 1, attention: 0, routers: 0, experts: 0, oneExpert: 0, other: 1 },
  chatTemplate: true,
  expertsKernels: { prefill: "eager", decode: "grouped_mm" },
  context: 64,
  kvBytesPerToken: 8,
  attentionHeads: 1,
  attentionImplementation: "sdpa",
  deterministic: false,
  fingerprint: {},
};
test("openRun: config.json stores URLs without credentials and says so; the same settings resume", (t) => {
  const run = join(tempDir(t), "run");
  const settings = {
    judge: { baseUrl: "http://u:pw-1234@127.0.0.1:8000/v1?api-version=2024-06-01&key=k-9876543" },
  };
  const model = MODEL;

  const first = openRun(run, "analyze", settings, { model }, "samples");
  first.release();
  assert.equal(first.resumed, false);
  const text = readFileSync(join(run, "config.json"), "utf8");
  assert.ok(!/pw-1234|k-9876543|api-version/.test(text), text);
  const stored = JSON.parse(text) as { settings: typeof settings; left_out: string };
  assert.equal(stored.settings.judge.baseUrl, "http://127.0.0.1:8000/v1");
  assert.match(stored.left_out, /user:password and query strings/);
  mkdirSync(join(run, "samples"));
  writeFileSync(join(run, "samples", "batch-00000.jsonl"), "{}\n");
  const second = openRun(run, "analyze", settings, { model }, "samples");
  second.release();
  assert.equal(second.resumed, true);
});

test("openRun: a switch steermoe gained after a run was made was off in it", (t) => {
  const run = join(tempDir(t), "run");
  const made = { model: { source: "m" } };
  openRun(run, "analyze", made, { model: MODEL }, "samples").release();
  mkdirSync(join(run, "samples"));
  writeFileSync(join(run, "samples", "batch-00000.jsonl"), "{}\n");
  const now = (deterministic: boolean) => ({ model: { source: "m", deterministic } });
  const off = openRun(run, "analyze", now(false), { model: MODEL }, "samples");
  off.release();
  assert.equal(off.resumed, true);
  assert.throws(
    () => openRun(run, "analyze", now(true), { model: MODEL }, "samples"),
    /made with other settings \(model\.deterministic undefined → true\)/,
  );
});

test("openRun: a run with no result yet starts afresh; a resume on another backend is recorded", (t) => {
  const run = join(tempDir(t), "run");
  const engine = { torch: "2.13.0" };
  const served = { model: MODEL, engine, servers: [{ url: "http://127.0.0.1:8000", server: "vllm" }] };
  const config = () => JSON.parse(readFileSync(join(run, "config.json"), "utf8")) as Record<string, unknown>;
  openRun(run, "analyze", {}, served, "samples").release();
  // The server never answered: nothing committed. Rerun locally: a fresh start, config.json names the engine alone.
  const local = openRun(run, "analyze", {}, { model: MODEL, engine }, "samples");
  local.release();
  assert.equal(local.resumed, false);
  assert.equal(config().servers, undefined);
  mkdirSync(join(run, "samples"));
  writeFileSync(join(run, "samples", "batch-00000.jsonl"), "{}\n");
  const resumes = () => openRun(run, "analyze", {}, served, "samples");
  const resumed = resumes();
  resumed.release();
  assert.equal(resumed.resumed, true);
  assert.equal(config().servers, undefined);
  const recorded = [{ engine, servers: served.servers }];
  assert.deepEqual(config().resumed_on, recorded);
  resumes().release(); // a backend already named is not added again
  assert.deepEqual(config().resumed_on, recorded);
});

test("openRun: a location pinned by a hash or the model's fingerprint resumes however it is spelled", (t) => {
  const run = join(tempDir(t), "run");
  const model = (source: string, fingerprint: Record<string, string>): ModelInfo => ({
    ...MODEL,
    source,
    fingerprint,
  });
  const pins = [{ setting: "data.file", by: "datasetSha256" }];
  const settings = (file: string, sha: string | undefined, source: string) => ({
    model: { source },
    data: { file },
    ...(sha === undefined ? {} : { datasetSha256: sha }),
  });
  const open = (file: string, sha: string | undefined, source: string, fingerprint: Record<string, string>) =>
    openRun(
      run,
      "analyze",
      settings(file, sha, source),
      { model: model(source, fingerprint) },
      "samples",
      pins,
    );
  const weights = { "model.safetensors": "8:aa" };
  open("data.json", "d1", "organism/model", weights).release();
  mkdirSync(join(run, "samples"));
  writeFileSync(join(run, "samples", "batch-00000.jsonl"), "{}\n"); // committed: no start over
  // Other spellings of the same data and model: the hash and the fingerprint decide.
  const resumed = open("/elsewhere/./data.json", "d1", "/abs/organism/model/", weights);
  resumed.release();
  assert.equal(resumed.resumed, true);
  // Other content behind the same spelling is refused, naming the hash or the model file.
  assert.throws(() => open("data.json", "d2", "organism/model", weights), /datasetSha256 "d1" → "d2"/);
  assert.throws(
    () => open("data.json", "d1", "organism/model", { "model.safetensors": "8:bb" }),
    /another model at organism\/model \(model\.safetensors changed\)/,
  );
  // Where a side has no pin (no fingerprint: a model not found on disk), the spelling is compared.
  assert.throws(
    () => open("data.json", "d1", "other/model", {}),
    /model\.source "organism\/model" → "other\/model"/,
  );
});
