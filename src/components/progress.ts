// A progress line on stderr: done/total, rate and ETA. Redrawn in place on a terminal; on a
// pipe or log file, printed at most every few seconds so logs stay readable.
export interface Progress {
  /** `done` units finished so far (absolute), `extra` adds e.g. "tok/s 812". */
  update(done: number, extra?: string): void;
  /** End the in-place line (call once, after the last update). */
  finish(): void;
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
    : s >= 60
      ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
      : `${s}s`;
}

/** `initial` is work already done before this run (a resumed job), left out of the rate. */
export function progress(
  label: string,
  total: number,
  unit: string,
  initial = 0,
  stream = process.stderr,
): Progress {
  const start = Date.now();
  let lastPrint = 0;
  const line = (done: number, extra?: string): string => {
    const elapsed = (Date.now() - start) / 1000;
    const rate = (done - initial) / Math.max(elapsed, 1e-9);
    const eta = rate > 0 ? (total - done) / rate : Infinity;
    const parts = [`${label} ${done}/${total} ${unit}`, `${rate.toFixed(2)} ${unit}/s`];
    if (extra) parts.push(extra);
    parts.push(done < total ? `ETA ${duration(eta)}` : `in ${duration(elapsed)}`);
    return parts.join(" · ");
  };
  return {
    update(done, extra) {
      const now = Date.now();
      if (stream.isTTY) stream.write(`\r\x1b[K${line(done, extra)}`);
      else if (now - lastPrint > 5000 || done === total) stream.write(line(done, extra) + "\n");
      else return;
      lastPrint = now;
    },
    finish() {
      if (stream.isTTY) stream.write("\n");
    },
  };
}

/** A one-line note on stderr about something the job repaired or chose on its own (not an error). */
export function note(text: string): void {
  process.stderr.write(`note: ${text}\n`);
}
