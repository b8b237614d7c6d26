// What the numbers were measured on, and memory readings of a process from /proc.
import { execFileSync } from "node:child_process";
import { cpus, totalmem } from "node:os";
import { readFileSync } from "node:fs";

export interface Machine {
  cpu: string;
  cores: number;
  ramGiB: number;
  node: string;
  os: string;
}

export function describeMachine(): Machine {
  let cpu = cpus()[0]?.model ?? "unknown";
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8")
      .split("\n")
      .find((l) => l.startsWith("model name"));
    if (line) cpu = line.split(":")[1]!.trim();
  } catch {
    // Not Linux: os.cpus() already named the CPU.
  }
  let os = `${process.platform} ${process.arch}`;
  try {
    os = execFileSync("uname", ["-sr"], { encoding: "utf8" }).trim();
  } catch {
    // uname missing: the platform name is enough.
  }
  return { cpu, cores: cpus().length, ramGiB: totalmem() / 2 ** 30, node: process.version, os };
}

/** VmHWM (peak resident set) and VmRSS of a live process, in bytes; undefined off Linux. */
export function processMemory(pid: number | undefined): { peak: number; rss: number } | undefined {
  if (pid === undefined) return undefined;
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = (key: string) =>
      Number(/(\d+) kB/.exec(status.split("\n").find((l) => l.startsWith(key)) ?? "")?.[1]);
    return { peak: kib("VmHWM:") * 1024, rss: kib("VmRSS:") * 1024 };
  } catch {
    return undefined;
  }
}

/** Host load average over the last minute: a busy machine makes every timing slower. */
export function loadAverage(): number | undefined {
  try {
    return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
  } catch {
    return undefined;
  }
}

let ticksPerSecond: number | undefined;

/** CPU seconds (user + system) a live process has used so far; less sensitive than wall time to
 * other work on a shared machine, so overheads are also reported on it. */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  ticksPerSecond ??= Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  try {
    // Fields after the ")" that closes the command name: utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
  } catch {
    return NaN;
  }
}
