// Run-file reading and appending: one-line errors that name the file, line and field.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { UserError } from "../src/components/errors.js";
import { SftRow } from "../src/components/io/run-files.js";
import { appendJsonl, readJson, readJsonl } from "../src/components/io/store.js";
import { tempDir } from "./helpers.js";

const dir = tempDir({ after });

const row = {
  batch_idx: 0,
  in_batch_idx: 1,
  sample_id: "0:unsafe",
  pair_id: "0",
  label: "unsafe",
  messages: [{ role: "user", content: "hi" }],
  target_source: "self",
};

test("appended rows read back; a bad line is named by line and field", () => {
  const path = join(dir, "sft_dataset.jsonl");
  appendJsonl(path, row);
  appendJsonl(path, { ...row, in_batch_idx: 2 });
  assert.equal(readFileSync(path, "utf8").split("\n").length, 3);
  assert.deepEqual(
    readJsonl(path, SftRow).map((r) => r.in_batch_idx),
    [1, 2],
  );

  appendJsonl(path, { ...row, label: "maybe" });
  assert.throws(
    () => readJsonl(path, SftRow),
    (err) => err instanceof UserError && err.message.startsWith(`${path} line 3 field label: `),
  );
  writeFileSync(path, JSON.stringify(row) + "\n{torn");
  assert.throws(
    () => readJsonl(path, SftRow),
    (err) => err instanceof UserError && err.message.startsWith(`${path} line 2: not valid JSON`),
  );
});

test("a missing file says what to do; a bad JSON file names the field", () => {
  const path = join(dir, "experts.json");
  assert.throws(() => readJson(path, SftRow, "run analyze first"), {
    message: `${path} is missing: run analyze first`,
  });
  writeFileSync(path, JSON.stringify({ ...row, messages: [] }));
  assert.throws(() => readJson(path, SftRow), /experts\.json field messages: /);
});
