// The committed model organism is the one its manifest describes, and its data is what the
// seeded generator makes.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { generateSyntheticData } from "../src/components/data/synthetic.js";
import { PACKAGE_ROOT } from "./helpers.js";

const ORGANISM = join(PACKAGE_ROOT, "organism");
const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

test("every model file matches the manifest, and the model stays under 10 MB", () => {
  const manifest = JSON.parse(readFileSync(join(ORGANISM, "manifest.json"), "utf8"));
  const files = readdirSync(join(ORGANISM, "model")).sort();
  assert.deepEqual(files, Object.keys(manifest.files).sort());
  for (const file of files) assert.equal(sha256(join(ORGANISM, "model", file)), manifest.files[file], file);
  const bytes = files.reduce((n, f) => n + statSync(join(ORGANISM, "model", f)).size, 0);
  assert.ok(bytes <= 10 * 1024 * 1024, `${bytes} bytes`);
});

test("the organism's data is what the seeded generator makes", () => {
  const data = generateSyntheticData(0);
  for (const [file, records] of [
    ["train.json", data.train],
    ["heldout.json", data.heldout],
    ["benign.json", data.benign],
  ] as const) {
    assert.equal(
      readFileSync(join(ORGANISM, "data", file), "utf8"),
      JSON.stringify(records, null, 2) + "\n",
      file,
    );
  }
});
