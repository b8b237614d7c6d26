// The bad-input suite's one rule, applied to every case: the CLI exits non-zero with a single line
// that names the culprit, prints no stack trace, leaves no half-written output and leaks no secret.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { test } from "node:test";
import { run, tempDir } from "../helpers.js";

export interface BadInputCase {
  /** "area: what is wrong", e.g. "data: invalid UTF-8 in a goal". */
  name: string;
  /** Builds the inputs in a fresh temporary folder and returns the CLI's arguments. */
  setup: (dir: string) => string[] | Promise<string[]>;
  /** What the one line must say: the file, record and field, or the flag, and the problem. */
  expect: RegExp;
  env?: NodeJS.ProcessEnv;
  /** Strings (keys, passwords) that must appear neither on stderr nor in any file under the folder. */
  secrets?: string[];
  /** Paths, relative to the folder, that must not exist afterwards: nothing half-written. */
  absent?: string[];
  /** Checks on the folder afterwards beyond `absent` (e.g. a run still resumable). */
  after?: (dir: string) => void | Promise<void>;
}

const STACK_LINE = /^\s+at .+:\d+:\d+\)?$|Traceback \(most recent call last\)/m;

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isFile());
}

/** One node:test test per case, run through the real CLI in a child process. */
export function badInputs(suite: string, cases: BadInputCase[]): void {
  for (const c of cases) {
    test(`${suite}: ${c.name}`, async (t) => {
      const dir = tempDir(t);
      const args = await c.setup(dir);
      const result = run(args, { env: { ...process.env, ...c.env }, cwd: dir });
      const stderr = result.stderr.trim();
      assert.notEqual(result.status, 0, `exit code 0; stderr: ${stderr}`);
      assert.equal(result.signal, null, `killed by ${result.signal}`);
      assert.doesNotMatch(stderr, STACK_LINE, "stack trace on stderr");
      const lines = stderr.split("\n").filter((line) => line.trim());
      assert.equal(lines.length, 1, `expected one line on stderr, got:\n${stderr}`);
      assert.match(lines[0]!, /^steermoe: /);
      assert.doesNotMatch(lines[0]!, /internal error/, "an input problem reported as an internal error");
      assert.match(lines[0]!, c.expect);
      for (const path of c.absent ?? []) assert.ok(!existsSync(join(dir, path)), `${path} was left behind`);
      for (const secret of c.secrets ?? []) {
        assert.ok(!stderr.includes(secret), "a secret reached stderr");
        for (const file of filesUnder(dir)) {
          assert.ok(!readFileSync(file).includes(secret), `a secret was written to ${relative(dir, file)}`);
        }
      }
      await c.after?.(dir);
    });
  }
}
