// Shared by the end-to-end tests: the real CLI, the real engine, tiny models built on the spot.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/components/engine.js";

export { PACKAGE_ROOT };
import { tinyModel } from "../src/recipes/tiny-model.js";

export const BIN = join(PACKAGE_ROOT, "bin", "steermoe");
export const PYTHON = join(PACKAGE_ROOT, "engine", ".venv", "bin", "python");

export function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), "steermoe-test-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function run(
  args: string[],
  options: { cwd?: string; input?: string } = {},
): SpawnSyncReturns<string> {
  return spawnSync(BIN, args, { encoding: "utf8", timeout: 120_000, ...options });
}

export async function buildTiny(dir: string, arch = "olmoe", layers = 2): Promise<string> {
  const out = join(dir, `${arch}-${layers}`);
  await tinyModel({ arch, out, seed: 0, size: { layers } });
  return out;
}
