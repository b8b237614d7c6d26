// Numbers and colours as the report page shows them; "n/a" wherever a value is missing.

export function isNum(v: unknown): v is number {
  return typeof v === "number" && isFinite(v);
}
export function fix(v: unknown, d = 3): string {
  return isNum(v) ? v.toFixed(d) : "n/a";
}
export function pct(v: unknown, d = 1): string {
  return isNum(v) ? (100 * v).toFixed(d) + "%" : "n/a";
}
export function int(v: unknown): string {
  return isNum(v) ? Math.round(v).toLocaleString("en-US") : "n/a";
}
export function sci(v: unknown): string {
  if (!isNum(v)) return "n/a";
  return Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(2) : fix(v, 4);
}
export function shown(v: unknown): string | undefined {
  return v === undefined ? undefined : String(v);
}
export function tick(v: number): string {
  if (!isNum(v)) return "";
  if (v !== 0 && (Math.abs(v) < 1e-2 || Math.abs(v) >= 1e5)) return v.toExponential(1);
  return String(+v.toPrecision(4));
}
// Diverging colour scale around 0 (ColorBrewer RdBu, blue = safe-leaning, red = unsafe).
export const STOPS = ["#2166ac", "#67a9cf", "#d1e5f0", "#f7f7f7", "#fddbc7", "#ef8a62", "#b2182b"];
function hex(c: string): number[] {
  return [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16));
}
export function colour(v: number | null | undefined, max: number): string {
  if (!isNum(v)) return "#c9ccd3";
  const t = Math.max(-1, Math.min(1, v / max));
  const x = ((t + 1) / 2) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const a = hex(STOPS[i]!);
  const b = hex(STOPS[i + 1]!);
  const f = x - i;
  return "rgb(" + a.map((c, j) => Math.round(c + (b[j]! - c) * f)).join(",") + ")";
}
