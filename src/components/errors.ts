// A UserError's message is shown to the user as it stands: one line that names the file, record
// and field at fault and says what to change. Anything else that escapes is a bug.
export class UserError extends Error {
  override readonly name = "UserError";
}

/** "file.json record 12 field all_prompt: ..." — the shape every input error takes. */
export function inputError(file: string, where: string | undefined, problem: string): UserError {
  return new UserError(where ? `${file} ${where}: ${problem}` : `${file}: ${problem}`);
}

/** One line from a zod failure: the first issue's path and message. */
export function zodProblem(err: {
  issues: readonly { path: readonly PropertyKey[]; message: string }[];
}): string {
  const issue = err.issues[0];
  if (!issue) return "invalid value";
  const path = issue.path.map(String).join(".");
  return path ? `field ${path}: ${issue.message}` : issue.message;
}

/** A zod failure on one record of a data file, as an input error naming file, record and field. */
export function recordError(file: string, where: string, err: Parameters<typeof zodProblem>[0]): UserError {
  return new UserError(`${file} ${where} ${zodProblem(err)}`);
}

/** The disk's refusals: the user's to mend, not bugs. */
const DISK_FAULTS: Record<string, string> = {
  EROFS: "read-only file system",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
};

/** "PATH: read-only file system" for a disk's refusal, naming the file meant (not its temporary
 * name, io/store.ts's `.NAME.tmp-PID`); undefined for any other error. */
export function diskFault(err: unknown): string | undefined {
  const { code, path } = (err ?? {}) as { code?: unknown; path?: unknown };
  if (typeof code !== "string" || !(code in DISK_FAULTS)) return undefined;
  const target = typeof path === "string" ? path.replace(/\/\.([^/]+)\.tmp-\d+$/, "/$1") : "a file";
  return `${target}: ${DISK_FAULTS[code]}`;
}
