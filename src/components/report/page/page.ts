// The report page's script, bundled at build time into one classic script that report.ts inlines
// into report.html after uPlot's.
//
// It reads the run's data from <script type="application/json" id="report-data"> and builds every
// section with createElement/textContent: no data ever passes through innerHTML or an attribute
// that the browser interprets, so a prompt that contains markup shows as the text it is.
import type UPlot from "uplot";
import type { ReportData } from "../report.js";
import { browser } from "./browser.js";
import { clear, h, jsonDetails, kvTable, lead, note, s, summary, table, td, th } from "./dom.js";
import { colour, fix, int, isNum, pct, sci, shown, STOPS, tick } from "./format.js";

// uPlot's own script, inlined before this one, defines the global.
declare const uPlot: typeof UPlot;

type Value<P> = P extends { value: infer T } ? T : never;
type RiskRow = Value<ReportData["riskDiff"]>[number];
type TrainRow = Value<ReportData["trainLog"]>[number];
type EvalSample = Value<ReportData["evalSamples"]>[number];
type SampleRow = Value<ReportData["samples"]>[number];
type Metrics = Value<ReportData["evalResults"]>[number]["metrics"];
type EvalMetric = keyof Metrics;
type Rate = NonNullable<Metrics[EvalMetric]>;

// report.ts wrote this block from schema-checked files in the same build, so it is trusted as typed.
const DATA = JSON.parse(document.getElementById("report-data")!.textContent!) as ReportData;

/** Shows a section's note in place of its content. */
function missing(el: HTMLElement, part: { note: string }): void {
  el.appendChild(note(part.note));
}

function key(l: number, e: number): string {
  return l + ":" + e;
}

// ---- shared lookups ----
const EXPERTS = "value" in DATA.experts ? DATA.experts.value : null;
const byCell = new Map<string, RiskRow>();
for (const r of "value" in DATA.riskDiff ? DATA.riskDiff.value : []) byCell.set(key(r.layer, r.expert), r);
const globalSet = new Set((EXPERTS?.global ?? []).map((e) => key(e.layer, e.expert)));
const trainedSet = new Set(
  ("value" in DATA.trained ? DATA.trained.value.trained_experts : []).map((e) => key(e.layer, e.expert)),
);
const selectedCount = new Map<string, number>();
for (const b of EXPERTS?.per_batch ?? []) {
  for (const e of b.experts) {
    const k = key(e.layer, e.expert);
    selectedCount.set(k, (selectedCount.get(k) ?? 0) + 1);
  }
}
const batchCount = EXPERTS
  ? isNum(EXPERTS.kept_batches)
    ? EXPERTS.kept_batches
    : EXPERTS.per_batch.length
  : 0;

// ---- page frame ----
const SECTIONS: readonly [id: string, title: string, render: (el: HTMLElement) => void][] = [
  ["config", "Run configuration", renderConfig],
  ["heatmap", "Risk difference by layer and expert", renderHeatmap],
  ["top", "Top experts", renderTop],
  ["stability", "Per-batch stability", renderStability],
  ["trained", "Trained experts", renderTrained],
  ["curves", "Training curves", renderCurves],
  ["eval", "Evaluation", renderEval],
  ["benchmarks", "Benchmarks", renderBenchmarks],
  ["steering", "Steering curve", renderSteering],
  ["samples", "Analysis samples", renderSamples],
];
const tooltip = h("div", { id: "tooltip", role: "tooltip" });

function frame(): void {
  const app = document.getElementById("app")!;
  clear(app);
  document.title = "steermoe report: " + DATA.run;
  const nav = h(
    "nav",
    null,
    SECTIONS.map(([id, title]) => h("a", { href: "#" + id }, title)),
  );
  app.appendChild(
    h(
      "header",
      { class: "top" },
      h("h1", null, "steermoe report"),
      h("span", { class: "run" }, DATA.run),
      nav,
    ),
  );
  const main = h("main");
  app.appendChild(main);
  for (const [id, title, render] of SECTIONS) {
    const el = h("section", { id }, h("h2", null, title));
    main.appendChild(el);
    try {
      render(el);
    } catch (err) {
      el.appendChild(
        note("could not render this section: " + (err instanceof Error ? err.message : String(err))),
      );
      console.error(err);
    }
  }
  main.appendChild(h("p", { class: "count" }, "Generated " + DATA.generated + " by steermoe."));
  document.body.appendChild(tooltip);
}

// ---- (a) configuration ----
function record(v: unknown): Record<string, unknown> {
  return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}
function flatten(obj: Record<string, unknown>, prefix: string, out: [string, string][]): [string, string][] {
  for (const [k, v] of Object.entries(obj)) {
    const name = prefix ? prefix + "." + k : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v as Record<string, unknown>, name, out);
    else out.push([name, Array.isArray(v) ? JSON.stringify(v) : String(v)]);
  }
  return out;
}
function without(obj: Record<string, unknown>, name: string): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).filter(([k]) => k !== name));
}
function renderConfig(el: HTMLElement): void {
  if (!("value" in DATA.config)) return missing(el, DATA.config);
  const c = DATA.config.value;
  const m = record(c.model);
  const d = record(c.dataset);
  el.appendChild(lead("What this run did and on which model, from config.json."));
  el.appendChild(
    summary([
      ["run kind", shown(c.kind)],
      ["model", shown(m.architecture || m.model_type)],
      [
        "layers (MoE)",
        m.num_layers !== undefined
          ? `${String(m.num_layers)} (${Array.isArray(m.moe_layers) ? m.moe_layers.length : 0})`
          : undefined,
      ],
      [
        "experts × top-k",
        m.num_experts !== undefined ? `${String(m.num_experts)} × ${String(m.top_k)}` : undefined,
      ],
      ["pairs", shown(d.pairs)],
      ["records", shown(d.records)],
    ]),
  );
  const half = (title: string, obj: Record<string, unknown>) =>
    h("div", null, h("h3", null, title), kvTable(flatten(obj, "", [])));
  el.appendChild(
    h(
      "div",
      { class: "grid2" },
      half("Settings", record(c.settings)),
      half("Model, engine and dataset", without(c, "settings")),
    ),
  );
  el.appendChild(jsonDetails("config.json as stored", c));
}

// ---- (b) heatmap ----
interface Layout {
  layers: number[];
  E: number;
  left: number;
  top: number;
  cw: number;
  ch: number;
}
function heatLayout(risk: RiskRow[]): Layout {
  const layers = EXPERTS
    ? EXPERTS.moe_layers.slice()
    : Array.from(new Set(risk.map((r) => r.layer))).sort((a, b) => a - b);
  const E = EXPERTS ? EXPERTS.num_experts : 1 + Math.max(...risk.map((r) => r.expert));
  const left = 46;
  const top = 26;
  const avail = Math.max(600, Math.min(1260, document.documentElement.clientWidth - 90));
  const cw = Math.max(12, Math.min(44, Math.floor((avail - left) / E)));
  const ch = Math.max(18, Math.min(30, cw));
  return { layers, E, left, top, cw, ch };
}
function renderHeatmap(el: HTMLElement): void {
  if (!("value" in DATA.riskDiff)) return missing(el, DATA.riskDiff);
  const risk = DATA.riskDiff.value;
  const L = heatLayout(risk);
  const max = risk.reduce((m, r) => (isNum(r.risk_diff) ? Math.max(m, Math.abs(r.risk_diff)) : m), 0) || 1;
  el.appendChild(
    lead(
      "Rows are MoE layers, columns experts. Each cell is the mean over analysis batches of the risk difference: the share of unsafe (jailbreak) tokens routed to the expert minus the share of safe tokens. Red experts fire more under jailbreak. Hover a cell for its counts.",
    ),
  );
  el.appendChild(legend(max));
  const W = L.left + L.E * L.cw + 4;
  const H = L.top + L.layers.length * L.ch + 4;
  const svg = s("svg", {
    class: "heatmap",
    width: W,
    height: H,
    viewBox: "0 0 " + W + " " + H,
    role: "img",
    "aria-label": "risk difference heatmap",
  });
  const step = L.cw >= 22 ? 1 : L.cw >= 14 ? 2 : 4;
  for (let e = 0; e < L.E; e += step) {
    const t = s("text", { x: L.left + e * L.cw + L.cw / 2, y: L.top - 8, "text-anchor": "middle" });
    t.textContent = String(e);
    svg.appendChild(t);
  }
  L.layers.forEach((layer, row) => {
    const y = L.top + row * L.ch;
    const lab = s("text", { x: L.left - 8, y: y + L.ch / 2 + 4, "text-anchor": "end" });
    lab.textContent = "L" + String(layer).padStart(2, "0");
    svg.appendChild(lab);
    for (let e = 0; e < L.E; e++) svg.appendChild(heatCell(layer, e, L.left + e * L.cw, y, L, max));
  });
  L.layers.forEach((layer, row) => {
    for (let e = 0; e < L.E; e++) {
      if (!globalSet.has(key(layer, e))) continue;
      svg.appendChild(
        s("rect", {
          class: "mark",
          x: L.left + e * L.cw + 1.5,
          y: L.top + row * L.ch + 1.5,
          width: L.cw - 3,
          height: L.ch - 3,
          fill: "none",
          stroke: "#111",
          "stroke-width": 1.6,
          "pointer-events": "none",
        }),
      );
    }
  });
  L.layers.forEach((layer, row) => {
    for (let e = 0; e < L.E; e++) {
      if (!trainedSet.has(key(layer, e))) continue;
      svg.appendChild(
        s("circle", {
          class: "trained",
          cx: L.left + (e + 0.5) * L.cw,
          cy: L.top + (row + 0.5) * L.ch,
          r: Math.max(2.5, Math.min(L.cw, L.ch) / 6),
          fill: "#fff",
          stroke: "#111",
          "stroke-width": 1.2,
          "pointer-events": "none",
        }),
      );
    }
  });
  svg.addEventListener("mousemove", showCellTip);
  svg.addEventListener("mouseleave", () => {
    tooltip.style.display = "none";
  });
  el.appendChild(h("div", { class: "heatwrap" }, svg));
}
function heatCell(
  layer: number,
  expert: number,
  x: number,
  y: number,
  L: Layout,
  max: number,
): SVGRectElement {
  const r = byCell.get(key(layer, expert));
  return s("rect", {
    class: "cell",
    x,
    y,
    width: L.cw,
    height: L.ch,
    fill: colour(r?.risk_diff, max),
    "data-layer": layer,
    "data-expert": expert,
    "data-label": r ? r.label : "L" + String(layer).padStart(2, "0") + "_E" + String(expert).padStart(2, "0"),
    "data-risk-diff": r && isNum(r.risk_diff) ? r.risk_diff : "",
  });
}
function legend(max: number): HTMLElement {
  const w = 260;
  const svg = s("svg", { width: w + 20, height: 34 });
  const grad = s("linearGradient", { id: "rdgrad" });
  STOPS.forEach((c, i) => {
    grad.appendChild(s("stop", { offset: (i / (STOPS.length - 1)) * 100 + "%", "stop-color": c }));
  });
  const defs = s("defs");
  defs.appendChild(grad);
  svg.appendChild(defs);
  svg.appendChild(
    s("rect", {
      x: 10,
      y: 2,
      width: w,
      height: 12,
      fill: "url(#rdgrad)",
      stroke: "#bbb",
      "stroke-width": 0.5,
    }),
  );
  const ticks: [number, number, string][] = [
    [-max, 10, "start"],
    [0, 10 + w / 2, "middle"],
    [max, 10 + w, "end"],
  ];
  for (const [v, x, anchor] of ticks) {
    const txt = s("text", { x, y: 28, "text-anchor": anchor });
    txt.textContent = (v > 0 ? "+" : "") + fix(v, 2);
    svg.appendChild(txt);
  }
  const mark = s("svg", { width: 18, height: 18 });
  mark.appendChild(
    s("rect", { x: 2, y: 2, width: 14, height: 14, fill: "#f7f7f7", stroke: "#111", "stroke-width": 1.6 }),
  );
  const nodata = s("svg", { width: 18, height: 18 });
  nodata.appendChild(s("rect", { x: 2, y: 2, width: 14, height: 14, fill: "#c9ccd3" }));
  const dot = s("svg", { width: 18, height: 18 });
  dot.appendChild(s("circle", { cx: 9, cy: 9, r: 3.5, fill: "#fff", stroke: "#111", "stroke-width": 1.2 }));
  return h(
    "div",
    { class: "legend" },
    h("span", null, "risk_diff"),
    svg,
    h("span", null, "← safe-leaning · unsafe-leaning →"),
    h("span", null, mark, " global unsafe set"),
    trainedSet.size ? h("span", null, dot, " trained") : null,
    h("span", null, nodata, " no data"),
  );
}
function showCellTip(ev: MouseEvent): void {
  const t = ev.target;
  if (!(t instanceof Element) || t.getAttribute("data-layer") === null) {
    tooltip.style.display = "none";
    return;
  }
  const layer = Number(t.getAttribute("data-layer"));
  const expert = Number(t.getAttribute("data-expert"));
  clear(tooltip);
  const lines = cellLines(layer, expert, byCell.get(key(layer, expert)), t.getAttribute("data-label"));
  lines.forEach((line, i) => tooltip.appendChild(h("div", i === 0 ? { class: "t" } : null, line)));
  tooltip.style.display = "block";
  let x = ev.clientX + 14;
  let y = ev.clientY + 14;
  const bw = tooltip.offsetWidth;
  const bh = tooltip.offsetHeight;
  if (x + bw > window.innerWidth - 8) x = ev.clientX - bw - 14;
  if (y + bh > window.innerHeight - 8) y = ev.clientY - bh - 14;
  tooltip.style.left = Math.max(4, x) + "px";
  tooltip.style.top = Math.max(4, y) + "px";
}
function cellLines(layer: number, expert: number, r: RiskRow | undefined, label: string | null): string[] {
  const head = label + "  (layer " + layer + ", expert " + expert + ")";
  if (!r) return [head, "no data"];
  const sel = selectedCount.get(key(layer, expert)) ?? 0;
  return [
    head,
    "risk_diff " + fix(r.risk_diff, 4) + "   95% CI [" + fix(r.ci_low, 3) + ", " + fix(r.ci_high, 3) + "]",
    "unsafe: a=" + int(r.a_unsafe) + " d=" + int(r.d_unsafe) + "  rate " + fix(r.a_unsafe_n, 3),
    "safe:   a=" + int(r.a_safe) + " d=" + int(r.d_safe) + "  rate " + fix(r.a_safe_n, 3),
    "batches with risk_diff > 0: " + pct(r.frac_positive, 0) + " of " + int(r.n_batches),
    (globalSet.has(key(layer, expert)) ? "in the global unsafe set · " : "") +
      (trainedSet.has(key(layer, expert)) ? "trained · " : "") +
      "selected in " +
      sel +
      " of " +
      batchCount +
      " batches",
  ];
}

// ---- (c) top experts ----
function globalBadge(isGlobal: boolean): HTMLElement {
  return h("td", null, isGlobal ? h("span", { class: "badge global" }, "global") : "");
}
function renderTop(el: HTMLElement): void {
  if (!("value" in DATA.riskDiff)) return missing(el, DATA.riskDiff);
  const rd = (r: RiskRow) => (isNum(r.risk_diff) ? r.risk_diff : -Infinity);
  const rows = DATA.riskDiff.value
    .slice()
    .sort((a, b) => rd(b) - rd(a))
    .slice(0, 50);
  el.appendChild(
    lead(
      "The 50 experts with the highest mean risk difference. Rows marked global are the experts selected for training (mean risk_diff above the global threshold)." +
        (EXPERTS ? " Global set: " + EXPERTS.global.length + " experts." : ""),
    ),
  );
  const head = [
    th("#", "num"),
    th("expert"),
    th("risk_diff", "num"),
    th("95% CI", "num"),
    th("unsafe rate", "num"),
    th("safe rate", "num"),
    th("unsafe a / d", "num"),
    th("safe a / d", "num"),
    th("batches > 0", "num"),
    th("selected in batches", "num"),
    th("set"),
  ];
  const body = rows.map((r, i) => {
    const k = key(r.layer, r.expert);
    const g = globalSet.has(k);
    return h(
      "tr",
      g ? { class: "global" } : null,
      td(i + 1, "num"),
      td(r.label, "mono"),
      td(fix(r.risk_diff, 4), "num"),
      td("[" + fix(r.ci_low, 3) + ", " + fix(r.ci_high, 3) + "]", "num"),
      td(fix(r.a_unsafe_n, 3), "num"),
      td(fix(r.a_safe_n, 3), "num"),
      td(int(r.a_unsafe) + " / " + int(r.d_unsafe), "num"),
      td(int(r.a_safe) + " / " + int(r.d_safe), "num"),
      td(pct(r.frac_positive, 0), "num"),
      td(EXPERTS ? (selectedCount.get(k) ?? 0) + " / " + batchCount : "n/a", "num"),
      globalBadge(g),
    );
  });
  el.appendChild(table("top-table", head, body));
}

// ---- (d) stability ----
function renderStability(el: HTMLElement): void {
  if (!("value" in DATA.experts)) return missing(el, DATA.experts);
  const experts = DATA.experts.value;
  const entries = Array.from(selectedCount.entries())
    .map(([k, count]) => {
      const r = byCell.get(k);
      return { count, label: r ? r.label : k, rd: r ? r.risk_diff : null, global: globalSet.has(k) };
    })
    .sort((a, b) => b.count - a.count || (b.rd || 0) - (a.rd || 0));
  const every = entries.filter((e) => e.count >= batchCount).length;
  const globalStable = entries.filter((e) => e.global && e.count >= batchCount / 2).length;
  el.appendChild(
    lead(
      "How often each expert lands in a batch's own unsafe set (risk_diff above the batch threshold, best top-k). Experts chosen in most batches are a stable finding; experts chosen once are noise.",
    ),
  );
  el.appendChild(
    summary([
      ["batches", String(batchCount)],
      ["experts ever selected", String(entries.length)],
      ["selected in every batch", String(every)],
      ["union set", String(experts.union.length)],
      ["global set", String(experts.global.length)],
      ["global, selected in ≥ half", String(globalStable)],
    ]),
  );
  if (!entries.length) {
    el.appendChild(note("no expert was selected in any batch"));
    return;
  }
  const body = entries.slice(0, 40).map((e) => {
    const share = batchCount ? e.count / batchCount : 0;
    return h(
      "tr",
      e.global ? { class: "global" } : null,
      td(e.label, "mono"),
      td(e.count + " / " + batchCount, "num"),
      h(
        "td",
        { class: "barcell" },
        h("div", { class: "bar", style: "width:" + (100 * share).toFixed(1) + "%" }),
      ),
      td(fix(e.rd, 4), "num"),
      globalBadge(e.global),
    );
  });
  el.appendChild(
    h("h3", null, "Most often selected" + (entries.length > 40 ? " (40 of " + entries.length + ")" : "")),
  );
  const head = [
    th("expert"),
    th("selected", "num"),
    th("share of batches"),
    th("mean risk_diff", "num"),
    th("set"),
  ];
  el.appendChild(table("stability-table", head, body));
}

// ---- (e) trained experts ----
function renderTrained(el: HTMLElement): void {
  if (!("value" in DATA.trained)) return missing(el, DATA.trained);
  const meta = DATA.trained.value;
  const list = meta.trained_experts;
  el.appendChild(
    lead(
      list.length +
        " experts were fine-tuned (from train/training_metadata.json); every other parameter stayed frozen.",
    ),
  );
  const body = list.map((e) => {
    const r = byCell.get(key(e.layer, e.expert));
    return h(
      "tr",
      null,
      td(e.label, "mono"),
      td(e.layer, "num"),
      td(e.expert, "num"),
      td(r ? fix(r.risk_diff, 4) : "n/a", "num"),
      globalBadge(globalSet.has(key(e.layer, e.expert))),
    );
  });
  const head = [th("expert"), th("layer", "num"), th("expert", "num"), th("risk_diff", "num"), th("set")];
  el.appendChild(table("trained-table", head, body));
  el.appendChild(jsonDetails("other training metadata", without(meta, "trained_experts")));
}

// ---- (f) training curves ----
type Metric = "loss" | "router_loss" | "lr" | "grad_norm" | "tokens" | "seconds";
interface Line {
  label: string;
  values: (number | null)[];
  colour: string;
  scale?: string;
}
function lineChart(title: string, xs: number[], series: Line[], right?: string): HTMLElement {
  const box = h("div", { class: "chart" }, h("h3", null, title));
  const width = Math.max(360, Math.min(1240, document.querySelector("main")!.clientWidth - 60));
  const ticks = (_u: UPlot, vals: number[]) => vals.map(tick);
  const axes: UPlot.Axis[] = [{ label: "step" }, { label: series[0]!.label, size: 76, values: ticks }];
  if (right)
    axes.push({ scale: "right", side: 1, label: right, size: 76, values: ticks, grid: { show: false } });
  new uPlot(
    {
      width,
      height: 240,
      scales: { x: { time: false } },
      axes,
      series: [
        { label: "step" },
        ...series.map((sr) => {
          const one: UPlot.Series = {
            label: sr.label,
            stroke: sr.colour,
            width: 1.6,
            spanGaps: true,
            points: { show: xs.length < 60 },
          };
          if (sr.scale) one.scale = sr.scale; // an explicit undefined would detach it from the y axis
          return one;
        }),
      ],
    },
    [xs, ...series.map((sr) => sr.values)],
    box,
  );
  return box;
}
function column(rows: TrainRow[], name: Metric): (number | null)[] {
  return rows.map((r) => {
    const v = r[name];
    return isNum(v) ? v : null;
  });
}
function has(rows: TrainRow[], name: Metric): boolean {
  return rows.some((r) => isNum(r[name]));
}
function total(rows: TrainRow[], name: Metric): number {
  return rows.reduce((a, r) => a + (r[name] || 0), 0);
}
function renderCurves(el: HTMLElement): void {
  if (!("value" in DATA.trainLog)) return missing(el, DATA.trainLog);
  const rows = DATA.trainLog.value.slice().sort((a, b) => a.step - b.step);
  const last = rows.at(-1);
  if (!last) {
    el.appendChild(note("not available: train/train_log.jsonl has no rows"));
    return;
  }
  const xs = rows.map((r) => r.step);
  el.appendChild(
    summary([
      ["steps", String(rows.length)],
      ["epochs", isNum(last.epoch) ? String(last.epoch + 1) : undefined],
      ["final loss", sci(last.loss)],
      ["tokens", has(rows, "tokens") ? int(total(rows, "tokens")) : undefined],
      ["time", has(rows, "seconds") ? fix(total(rows, "seconds"), 1) + " s" : undefined],
    ]),
  );
  const loss: Line[] = [{ label: "loss", values: column(rows, "loss"), colour: "#2c5fb8" }];
  if (has(rows, "router_loss")) {
    loss.push({
      label: "router loss",
      values: column(rows, "router_loss"),
      colour: "#c0392b",
      scale: "right",
    });
  }
  const twoAxes = loss.length > 1;
  el.appendChild(
    lineChart(
      "Loss" + (twoAxes ? " and router loss (right axis)" : ""),
      xs,
      loss,
      twoAxes ? "router loss" : undefined,
    ),
  );
  if (has(rows, "lr")) {
    el.appendChild(
      lineChart("Learning rate", xs, [{ label: "lr", values: column(rows, "lr"), colour: "#2e7d32" }]),
    );
  }
  if (has(rows, "grad_norm")) {
    el.appendChild(
      lineChart("Gradient norm", xs, [
        { label: "grad norm", values: column(rows, "grad_norm"), colour: "#8e44ad" },
      ]),
    );
  }
}

// ---- (g) evaluation ----
const METRICS: Record<EvalMetric, string> = {
  attack_success: "attack success (jailbreaks obeyed)",
  plain_refusal: "refusal of plain harmful requests",
  benign_refusal: "refusal of benign requests",
};
function rateText(m: Rate | undefined): string {
  if (!m) return "n/a";
  const ci = isNum(m.low) && isNum(m.high) ? " [" + pct(m.low) + ", " + pct(m.high) + "]" : "";
  return pct(m.rate) + ci + (isNum(m.n) ? "  n=" + int(m.n) : "");
}
function renderEval(el: HTMLElement): void {
  el.appendChild(
    lead(
      "Rates with 95% confidence intervals. Lower attack success is better; plain refusal should stay high and benign refusal low.",
    ),
  );
  if (DATA.evalUnfinished) el.appendChild(note("warning: " + DATA.evalUnfinished));
  if (!("value" in DATA.evalResults)) missing(el, DATA.evalResults);
  else {
    const results = DATA.evalResults.value;
    const names = (Object.keys(METRICS) as EvalMetric[]).filter((k) => results.some((r) => r.metrics[k]));
    const head = [th("model"), names.map((k) => th(METRICS[k], "num"))];
    const body = results.map((r) =>
      h(
        "tr",
        null,
        td(r.name, "mono"),
        names.map((k) => td(rateText(r.metrics[k]), "num")),
      ),
    );
    el.appendChild(table("eval-table", head, body));
  }
  el.appendChild(h("h3", null, "Examples"));
  if (!("value" in DATA.evalSamples)) return missing(el, DATA.evalSamples);
  const rows = DATA.evalSamples.value;
  browser(
    el,
    "eval",
    rows,
    [
      { name: "model", label: "model", values: unique(rows.map((r) => r.model)), get: (r) => r.model },
      { name: "set", label: "set", values: unique(rows.map((r) => r.set)), get: (r) => r.set },
      {
        name: "verdict",
        label: "verdict",
        values: ["refusal", "complied"],
        get: (r) => (r.is_refusal === true ? "refusal" : r.is_refusal === false ? "complied" : ""),
      },
    ],
    (r) => [r.model, r.set, r.id, r.prompt, r.response],
    evalCard,
  );
}
// ---- (h) steering curve ----
type Curve = Value<ReportData["steering"]>[number];
type CurvePoint = Curve["points"][number];
const CURVE_SERIES = [
  { metric: "attack_success", label: "attack success", colour: "#c0392b" },
  { metric: "benign_refusal", label: "benign over-refusal", colour: "#2c5fb8" },
] as const;
const W = 380;
const H = 250;
const PAD = { left: 46, right: 12, top: 22, bottom: 38 };

/** An SVG plot frame `width` wide: x over [0, xMax], y over [0, 1] as percent, with axis labels. */
function plotFrame(
  xMax: number,
  xLabel: string,
  xTicks: number[],
  xFormat: (v: number) => string,
  width = W,
) {
  const svg = s("svg", { viewBox: `0 0 ${width} ${H}`, width, height: H, class: "curve" });
  const x = (v: number) => PAD.left + (v / (xMax || 1)) * (width - PAD.left - PAD.right);
  const y = (v: number) => H - PAD.bottom - v * (H - PAD.top - PAD.bottom);
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    svg.appendChild(s("line", { x1: PAD.left, x2: width - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
    const label = s("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" });
    label.textContent = pct(v, 0);
    svg.appendChild(label);
  }
  for (const v of xTicks) {
    const label = s("text", { x: x(v), y: H - PAD.bottom + 16, "text-anchor": "middle", class: "tick" });
    label.textContent = xFormat(v);
    svg.appendChild(label);
  }
  const title = s("text", {
    x: (PAD.left + width - PAD.right) / 2,
    y: H - 6,
    "text-anchor": "middle",
    class: "axis",
  });
  title.textContent = xLabel;
  svg.appendChild(title);
  return { svg, x, y };
}
function dot(cx: number, cy: number, colour: string, tip: string, cls = "pt"): SVGElement {
  const c = s("circle", { cx, cy, r: 3.5, fill: colour, class: cls });
  const t = s("title");
  t.textContent = tip;
  c.appendChild(t);
  return c;
}
function operatingMark(cx: number, cy: number): SVGElement {
  return s("circle", { cx, cy, r: 8, class: "op" });
}
function pointTip(p: CurvePoint): string {
  return (
    p.name +
    " (intensity " +
    p.intensity +
    ")\n" +
    CURVE_SERIES.map((sr) => sr.label + ": " + rateText(p.metrics[sr.metric])).join("\n")
  );
}
/** Attack success and over-refusal against intensity, 95% intervals as bands. The sweep's
 * intensities are evenly spaced (they are usually geometric: 0.25, 0.5, 1, 2, 4). */
function intensityChart(curve: Curve): HTMLElement {
  const at = new Map(curve.points.map((p, i) => [p, i]));
  const indices = curve.points.map((_, i) => i);
  const frame = plotFrame(indices.length - 1, "steering intensity", indices, (i) =>
    String(curve.points[i]!.intensity),
  );
  const { svg, y } = frame;
  const x = (p: CurvePoint) => frame.x(at.get(p)!);
  for (const sr of CURVE_SERIES) {
    const pts = curve.points.filter((p) => p.metrics[sr.metric]);
    const rate = (p: CurvePoint) => p.metrics[sr.metric]!;
    const band = [
      ...pts.map((p) => x(p) + "," + y(rate(p).high)),
      ...pts.toReversed().map((p) => x(p) + "," + y(rate(p).low)),
    ];
    svg.appendChild(s("polygon", { points: band.join(" "), fill: sr.colour, class: "band" }));
    const line = pts.map((p) => x(p) + "," + y(rate(p).rate));
    svg.appendChild(s("polyline", { points: line.join(" "), stroke: sr.colour, class: "line" }));
    for (const p of pts) svg.appendChild(dot(x(p), y(rate(p).rate), sr.colour, pointTip(p)));
  }
  const op = curve.operating === null ? null : curve.points[curve.operating]!;
  if (op?.metrics.attack_success) svg.appendChild(operatingMark(x(op), y(op.metrics.attack_success.rate)));
  return h("div", { class: "chart" }, h("h3", null, "Against intensity"), svg, curveLegend());
}
/** Attack success against over-refusal, one point per intensity, 95% intervals as error bars. */
function tradeOffChart(curve: Curve): HTMLElement {
  const pts = curve.points.filter((p) => p.metrics.attack_success && p.metrics.benign_refusal);
  const xMax = Math.min(1, Math.max(0.2, ...pts.map((p) => p.metrics.benign_refusal!.high)));
  const ticks = [0, xMax / 2, xMax];
  const { svg, x, y } = plotFrame(xMax, "benign over-refusal", ticks, (v) => pct(v, 0));
  const at = (p: CurvePoint) =>
    [x(p.metrics.benign_refusal!.rate), y(p.metrics.attack_success!.rate)] as const;
  svg.appendChild(
    s("polyline", { points: pts.map((p) => at(p).join(",")).join(" "), stroke: "#555", class: "line" }),
  );
  for (const p of pts) {
    const [cx, cy] = at(p);
    const a = p.metrics.attack_success!;
    const b = p.metrics.benign_refusal!;
    svg.appendChild(s("line", { x1: cx, x2: cx, y1: y(a.low), y2: y(a.high), class: "err" }));
    svg.appendChild(s("line", { x1: x(b.low), x2: x(b.high), y1: cy, y2: cy, class: "err" }));
    svg.appendChild(dot(cx, cy, "#555", pointTip(p)));
  }
  // Points at the same rates share one label: "×0.25, ×0.5".
  const labels = new Map<string, string[]>();
  for (const p of pts) {
    const where = at(p).map(Math.round).join(",");
    labels.set(where, [...(labels.get(where) ?? []), "×" + p.intensity]);
  }
  for (const [where, names] of labels) {
    const [cx, cy] = where.split(",").map(Number);
    const label = s("text", { x: cx! + 7, y: cy! - 7, class: "tick" });
    label.textContent = names.join(", ");
    svg.appendChild(label);
  }
  const op = curve.operating === null ? null : curve.points[curve.operating]!;
  if (op && pts.includes(op)) svg.appendChild(operatingMark(...at(op)));
  return h("div", { class: "chart" }, h("h3", null, "Attack success against over-refusal"), svg);
}
function curveLegend(): HTMLElement {
  return h(
    "p",
    { class: "legend-line" },
    CURVE_SERIES.map((sr) => h("span", { style: "color:" + sr.colour }, "● " + sr.label + "  ")),
    h("span", null, "◯ operating point"),
  );
}
function renderSteering(el: HTMLElement): void {
  el.appendChild(
    lead(
      "Each model evaluated at multiples (intensities) of the steering map's router-logit biases; intensity 0 is the model unsteered. Bands and bars are 95% Wilson intervals. The ring marks the operating point: the lowest attack success whose benign over-refusal stays within +5 points of the unsteered model's.",
    ),
  );
  if (!("value" in DATA.steering)) return missing(el, DATA.steering);
  const curves = DATA.steering.value;
  if (curves.length === 0) {
    el.appendChild(note("not available: the evaluation has no steered variants (eval --steer-sweep)"));
    return;
  }
  const columns = curves.map((curve) => {
    const op = curve.operating === null ? null : curve.points[curve.operating]!;
    return h(
      "div",
      { class: "curve-model", "data-model": curve.model },
      h("h3", { class: "mono" }, curve.model),
      summary([
        ["points", String(curve.points.length)],
        ["operating point", op ? "intensity " + op.intensity : "none"],
        ["attack success there", op ? rateText(op.metrics.attack_success) : undefined],
        ["over-refusal there", op ? rateText(op.metrics.benign_refusal) : undefined],
      ]),
      intensityChart(curve),
      tradeOffChart(curve),
    );
  });
  el.appendChild(h("div", { class: "curve-grid" }, columns));
}

// ---- standard benchmarks ----
type Benchmark = Value<ReportData["benchmarks"]>[number];
type BenchmarkRates = Benchmark["models"][number]["metrics"];
type BenchmarkMetric = keyof BenchmarkRates;
const BENCHMARK_METRICS: Record<BenchmarkMetric, string> = {
  attack_success: "attack success",
  refusal: "refusal",
  over_refusal: "over-refusal",
};
// A model keeps its colour in every benchmark's chart (Tableau 10).
const MODEL_COLOURS = [
  "#4e79a7",
  "#f28e2b",
  "#59a14f",
  "#e15759",
  "#76b7b2",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
  "#bab0ac",
];
const BAR = 32;
const GROUP_GAP = 34;

/** The metrics any of `rates` has, in BENCHMARK_METRICS' order. */
function benchmarkMetrics(rates: BenchmarkRates[]): BenchmarkMetric[] {
  return (Object.keys(BENCHMARK_METRICS) as BenchmarkMetric[]).filter((k) => rates.some((r) => r[k]));
}
/** One group of bars per metric, one bar per model, 95% intervals as whiskers. */
function benchmarkChart(b: Benchmark, colourOf: (model: string) => string): SVGElement {
  const metrics = benchmarkMetrics(b.models.map((m) => m.metrics));
  const group = b.models.length * BAR + GROUP_GAP;
  const width = PAD.left + PAD.right + metrics.length * group;
  const { svg, x, y } = plotFrame(
    metrics.length,
    "",
    metrics.map((_, i) => i + 0.5),
    (v) => BENCHMARK_METRICS[metrics[Math.floor(v)]!],
    width,
  );
  metrics.forEach((metric, g) => {
    b.models.forEach((m, i) => {
      const r = m.metrics[metric];
      if (!r) return;
      const left = x(g) + GROUP_GAP / 2 + i * BAR;
      const mid = left + BAR / 2;
      const bar = s("rect", {
        class: "rate-bar",
        x: left + 2,
        y: y(r.rate),
        width: BAR - 4,
        height: y(0) - y(r.rate),
        fill: colourOf(m.name),
        "data-model": m.name,
        "data-metric": metric,
      });
      const tip = s("title");
      tip.textContent = m.name + "\n" + BENCHMARK_METRICS[metric] + ": " + rateText(r);
      bar.appendChild(tip);
      svg.appendChild(bar);
      for (const [x1, x2, y1, y2] of [
        [mid, mid, y(r.low), y(r.high)],
        [mid - 4, mid + 4, y(r.low), y(r.low)],
        [mid - 4, mid + 4, y(r.high), y(r.high)],
      ]) {
        svg.appendChild(s("line", { x1, x2, y1, y2, class: "whisker" }));
      }
      const value = s("text", { x: mid, y: y(r.high) - 4, "text-anchor": "middle", class: "tick" });
      value.textContent = pct(r.rate, 0);
      svg.appendChild(value);
    });
  });
  return svg;
}
type BenchmarkModel = Benchmark["models"][number];
/** Category × model, overall first: each metric's rate [95% interval] n=. */
function benchmarkTable(b: Benchmark, categories: string[]): HTMLElement {
  const rows = [
    { category: "all", of: (m: BenchmarkModel) => m.metrics },
    ...categories.map((c) => ({ category: c, of: (m: BenchmarkModel) => m.categories[c] })),
  ];
  const metrics = benchmarkMetrics(b.models.flatMap((m) => [m.metrics, ...Object.values(m.categories)]));
  const head = [th("category"), th("model"), metrics.map((k) => th(BENCHMARK_METRICS[k], "num"))];
  const body = rows.flatMap(({ category, of }) =>
    b.models.map((m, i) =>
      h(
        "tr",
        i === 0 ? { class: "group" } : null,
        i === 0 ? h("th", { rowspan: b.models.length }, category) : null,
        td(m.name, "mono"),
        metrics.map((k) => td(rateText(of(m)?.[k]), "num")),
      ),
    ),
  );
  return h("div", { class: "bench-table" }, table(null, head, body));
}
function renderBenchmarks(el: HTMLElement): void {
  el.appendChild(
    lead(
      "Each standard benchmark the evaluation ran (eval --benchmark), every model side by side, as listed: usually the model before training, then after. Attack success: harmful prompts answered (lower is better); refusal: the same prompts refused; over-refusal: benign prompts refused (lower is better). Whiskers and brackets are 95% Wilson intervals.",
    ),
  );
  if (!("value" in DATA.benchmarks)) return missing(el, DATA.benchmarks);
  const benchmarks = DATA.benchmarks.value;
  if (benchmarks.length === 0) {
    el.appendChild(note("not available: the evaluation ran no benchmark (eval --benchmark)"));
    return;
  }
  const models = [...new Set(benchmarks.flatMap((b) => b.models.map((m) => m.name)))];
  const colourOf = (model: string) => MODEL_COLOURS[models.indexOf(model) % MODEL_COLOURS.length]!;
  el.appendChild(
    h(
      "p",
      { class: "legend-line" },
      models.map((m) =>
        h("span", { style: "color:" + colourOf(m) }, "■ ", h("span", { class: "mono" }, m), "  "),
      ),
    ),
  );
  for (const b of benchmarks) {
    const categories = [...new Set(b.models.flatMap((m) => Object.keys(m.categories)))];
    const skipped = Math.max(...b.models.map((m) => m.skipped));
    el.appendChild(
      h(
        "div",
        { class: "benchmark", "data-benchmark": b.label },
        h("h3", { class: "mono" }, b.label),
        summary([
          ["categories", String(categories.length)],
          ["copyright behaviours left out", skipped > 0 ? String(skipped) : undefined],
        ]),
        h("div", { class: "chart" }, benchmarkChart(b, colourOf)),
        benchmarkTable(b, categories),
      ),
    );
  }
}

function unique<T>(values: T[]): T[] {
  return Array.from(new Set(values)).sort();
}
function verdictBadge(isRefusal: boolean | null | undefined): HTMLElement {
  if (isRefusal === true) return h("span", { class: "badge refusal" }, "refusal");
  if (isRefusal === false) return h("span", { class: "badge complied" }, "complied");
  return h("span", { class: "badge plain" }, "no verdict");
}
function textBlock(role: string, text: string, cls = ""): HTMLElement {
  return h(
    "div",
    { class: "msg " + cls },
    h("div", { class: "role" }, role),
    h("div", { class: "text" }, text),
  );
}
function evalCard(r: EvalSample): HTMLElement {
  return h(
    "div",
    { class: "card" },
    h(
      "div",
      { class: "head" },
      h("span", { class: "id" }, r.id),
      h("span", { class: "badge plain" }, r.model),
      h("span", { class: "badge plain" }, r.set),
      verdictBadge(r.is_refusal),
    ),
    h(
      "div",
      { class: "body" },
      h("div", null, textBlock("prompt", r.prompt)),
      h("div", null, textBlock("response", r.response, "assistant")),
    ),
  );
}

// ---- (h) analysis samples ----
function renderSamples(el: HTMLElement): void {
  if (!("value" in DATA.samples)) return missing(el, DATA.samples);
  const rows = DATA.samples.value;
  const kept = rows.filter((r) => r.kept !== false).length;
  el.appendChild(
    lead(
      "Every generated sample of the analysis: the conversation the model saw, what it answered, the judge's verdict and whether quality control kept it. " +
        kept +
        " of " +
        rows.length +
        " samples kept.",
    ),
  );
  browser(
    el,
    "samples",
    rows,
    [
      { name: "label", label: "label", values: ["safe", "unsafe"], get: (r) => r.label },
      {
        name: "kept",
        label: "kept",
        values: ["kept", "dropped"],
        get: (r) => (r.kept === false ? "dropped" : "kept"),
      },
      {
        name: "batch",
        label: "batch",
        values: unique(rows.map((r) => r.batch_idx))
          .sort((a, b) => a - b)
          .map(String),
        get: (r) => String(r.batch_idx),
      },
    ],
    (r) => [r.sample_id, r.pair_id, r.text, r.why ?? "", ...r.messages.map((m) => m.content)],
    sampleCard,
  );
}
function sampleCard(r: SampleRow): HTMLElement {
  const v = r.verdict;
  return h(
    "div",
    { class: "card" },
    h(
      "div",
      { class: "head" },
      h("span", { class: "id" }, r.sample_id),
      h("span", { class: "badge " + (r.label === "unsafe" ? "unsafe" : "safe") }, r.label),
      h("span", null, "pair " + r.pair_id + " · batch " + r.batch_idx + " #" + r.in_batch_idx),
      r.kept === false
        ? h("span", { class: "badge dropped" }, "dropped")
        : h("span", { class: "badge kept" }, "kept"),
      r.why ? h("span", { class: "why" }, r.why) : null,
      v ? verdictBadge(v.isRefusal) : h("span", { class: "badge plain" }, "not judged"),
      v ? h("span", { class: "count" }, fix(v.confidence, 2) + " · " + v.reason) : null,
    ),
    h(
      "div",
      { class: "body" },
      h(
        "div",
        null,
        r.messages.map((m) => textBlock(m.role, m.content)),
      ),
      h(
        "div",
        null,
        textBlock(
          r.finish_reason ? "response · finish: " + r.finish_reason : "response",
          r.text,
          "assistant",
        ),
      ),
    ),
  );
}

frame();
