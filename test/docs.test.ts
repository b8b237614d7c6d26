// The docs that describe the tree stay true to it.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
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

test("src/ has no import cycle (type imports included): its layers only point down", () => {
  const files = sources("src").filter((f) => f.endsWith(".ts"));
  const imports = new Map(
    files.map((file) => {
      const text = readFileSync(join(PACKAGE_ROOT, file), "utf8");
      const targets = [...text.matchAll(/^(?:import|export)[^;]*? from "(\.{1,2}\/[^"]+)\.js";/gms)].map(
        (m) => join(dirname(file), `${m[1]!}.ts`),
      );
      return [file, targets.filter((t) => files.includes(t))];
    }),
  );
  assert.ok(
    [...imports.values()].some((targets) => targets.length > 0),
    "no imports found: the pattern is wrong",
  );
  const cycles: string[] = [];
  const state = new Map<string, "open" | "done">();
  const visit = (file: string, path: string[]) => {
    if (state.get(file) === "done") return;
    if (state.get(file) === "open") {
      cycles.push([...path.slice(path.indexOf(file)), file].join(" → "));
      return;
    }
    state.set(file, "open");
    for (const next of imports.get(file)!) visit(next, [...path, file]);
    state.set(file, "done");
  };
  for (const file of files) visit(file, []);
  assert.deepEqual(cycles, []);
});
