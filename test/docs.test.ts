// The docs that describe the tree stay true to it.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { test } from "node:test";
import { PACKAGE_ROOT } from "./helpers.js";

/** Source files under `dir`, relative to the package root. */
function sources(dir: string): string[] {
  return readdirSync(join(PACKAGE_ROOT, dir), { recursive: true, encoding: "utf8" })
    .filter((f) => /\.(ts|py)$/.test(f) && !f.endsWith("__init__.py") && !f.includes("__pycache__"))
    .map((f) => join(dir, f));
}

test("docs/architecture.md names every source file and every folder of the package", () => {
  const doc = readFileSync(join(PACKAGE_ROOT, "docs", "architecture.md"), "utf8");
  const files = ["src", "engine/steermoe_engine", "engine/steermoe", "bench"].flatMap(sources);
  assert.ok(files.length > 100, `${files.length} files`);
  const unnamed = files.filter((f) => !doc.includes(f.split("/").at(-1)!));
  assert.deepEqual(unnamed, [], "docs/architecture.md does not name these; add each with what it owns");
  const ignored = new Set(["node_modules", "dist", "runs"]);
  const folders = readdirSync(PACKAGE_ROOT).filter(
    (name) => !name.startsWith(".") && !ignored.has(name) && statSync(join(PACKAGE_ROOT, name)).isDirectory(),
  );
  const subfolders = ["src/components", "engine/steermoe_engine"].flatMap((dir) =>
    readdirSync(join(PACKAGE_ROOT, dir), { withFileTypes: true })
      .filter((e) => e.isDirectory() && e.name !== "__pycache__")
      .map((e) => relative(PACKAGE_ROOT, join(PACKAGE_ROOT, dir, e.name))),
  );
  const missing = [...folders, ...subfolders].filter((f) => !doc.includes(`${f.split("/").at(-1)!}/`));
  assert.deepEqual(missing, [], "docs/architecture.md does not name these folders");
});
