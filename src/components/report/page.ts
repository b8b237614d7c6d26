// The report page's own style and script, inlined into report.html by report.ts.
//
// The script reads the run's data from <script type="application/json" id="report-data"> and
// builds every section with createElement/textContent: no data ever passes through innerHTML or
// an attribute that the browser interprets, so a prompt that contains markup shows as the text it
// is. It is plain browser JavaScript kept as a string (the project's TypeScript has no DOM types);
// the headless-Chromium test in test/report.test.ts is what checks it runs cleanly.

export const PAGE_CSS = `
:root {
  --fg: #1d2330; --muted: #5b6475; --line: #dfe3ea; --bg: #f5f6f8; --card: #fff;
  --accent: #2c5fb8; --safe: #1f77b4; --unsafe: #c0392b; --warn: #9a6a00;
}
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header.top { position: sticky; top: 0; z-index: 5; background: #1d2330; color: #fff;
  padding: 10px 24px; display: flex; gap: 24px; align-items: baseline; flex-wrap: wrap; }
header.top h1 { font-size: 17px; margin: 0; font-weight: 600; }
header.top .run { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; color: #c9d4ea; }
header.top nav { display: flex; gap: 14px; flex-wrap: wrap; font-size: 13px; }
header.top nav a { color: #b9c8e6; text-decoration: none; }
header.top nav a:hover { color: #fff; text-decoration: underline; }
main { max-width: 1320px; margin: 0 auto; padding: 16px 24px 64px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 14px 20px 18px; margin: 16px 0; }
section > h2 { font-size: 17px; margin: 0 0 4px; }
p.lead { color: var(--muted); margin: 0 0 12px; max-width: 980px; }
.note { color: var(--muted); font-style: italic; background: #fafbfc; border: 1px dashed var(--line);
  padding: 8px 12px; border-radius: 6px; }
h3 { font-size: 14px; margin: 16px 0 6px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f0f2f6; font-weight: 600; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.global td { background: #fff4f2; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; }
.scroll { max-height: 460px; overflow: auto; border: 1px solid var(--line); border-radius: 6px;
  width: fit-content; max-width: 100%; }
.grid2 .scroll { width: auto; }
.grid2 .scroll table { width: 100%; }
.grid2 { display: grid; grid-template-columns: minmax(300px, 1fr) minmax(300px, 1.3fr); gap: 20px; }
@media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
.badge { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 11.5px; font-weight: 600;
  line-height: 18px; border: 1px solid transparent; white-space: nowrap; }
.badge.safe { background: #e6f0fa; color: var(--safe); }
.badge.unsafe { background: #fbe9e7; color: var(--unsafe); }
.badge.global { background: #c0392b; color: #fff; }
.badge.kept { background: #e8f5e9; color: #2e7d32; }
.badge.dropped { background: #fff3e0; color: var(--warn); }
.badge.refusal { background: #e8f5e9; color: #2e7d32; }
.badge.complied { background: #fbe9e7; color: var(--unsafe); }
.badge.plain { background: #eef0f4; color: var(--muted); }
.bar { height: 10px; background: #c0392b; border-radius: 2px; min-width: 1px; }
.barcell { width: 220px; }
.heatwrap { overflow-x: auto; padding-bottom: 4px; }
svg.heatmap rect.cell { stroke: #fff; stroke-width: 0.5; }
svg.heatmap rect.cell:hover { stroke: #111; stroke-width: 1.5; }
svg.heatmap text { font-size: 10.5px; fill: var(--muted); }
.legend { display: flex; gap: 22px; align-items: center; flex-wrap: wrap; margin: 6px 0 10px;
  color: var(--muted); font-size: 12px; }
.legend > span { display: inline-flex; align-items: center; gap: 4px; }
.legend svg text { font-size: 10.5px; fill: var(--muted); }
#tooltip { position: fixed; z-index: 20; pointer-events: none; background: #1d2330; color: #fff;
  padding: 8px 10px; border-radius: 6px; font-size: 12px; line-height: 1.5; box-shadow: 0 4px 14px #0004;
  display: none; max-width: 360px; }
#tooltip .t { font-weight: 700; font-size: 13px; }
.controls { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; margin: 6px 0 10px; }
.controls label { color: var(--muted); font-size: 12.5px; }
.controls input, .controls select, .controls button { font: inherit; font-size: 13px; padding: 3px 8px;
  border: 1px solid #c5cbd6; border-radius: 5px; background: #fff; }
.controls input[type=search] { width: 260px; }
.controls button:disabled { opacity: .45; }
.count { color: var(--muted); font-size: 12.5px; }
.card { border: 1px solid var(--line); border-radius: 7px; margin: 10px 0; overflow: hidden; }
.card .head { background: #f6f7f9; padding: 6px 12px; display: flex; gap: 8px; align-items: center;
  flex-wrap: wrap; border-bottom: 1px solid var(--line); font-size: 12.5px; }
.card .head .id { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-weight: 600; }
.card .head .why { color: var(--warn); }
.card .body { padding: 8px 12px; display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.card .body > div { display: grid; gap: 6px; align-content: start; min-width: 0; }
@media (max-width: 900px) { .card .body { grid-template-columns: 1fr; } }
.msg .role { font-size: 11px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted);
  font-weight: 600; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; font-family: ui-monospace, SFMono-Regular, Menlo,
  monospace; font-size: 12.5px; background: #fbfbfc; border: 1px solid #eceef2; border-radius: 5px;
  padding: 6px 8px; max-height: 15em; overflow: auto; margin: 2px 0 0; }
.msg.assistant .text { background: #f6f9ff; border-color: #dbe5f7; }
details > summary { cursor: pointer; color: var(--accent); margin: 8px 0 4px; }
pre.json { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12px; background: #fbfbfc;
  border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; max-height: 420px; overflow: auto; }
.chart { margin: 6px 0 14px; }
.chart h3 { margin-bottom: 2px; }
.summary { display: flex; gap: 12px; flex-wrap: wrap; margin: 4px 0 12px; }
.summary .kv { background: #f6f7f9; border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; }
.summary .kv .k { color: var(--muted); font-size: 11.5px; }
.summary .kv .v { font-weight: 600; font-size: 15px; }
`;

export const PAGE_SCRIPT = String.raw`
"use strict";
(function () {
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var SVG = "http://www.w3.org/2000/svg";
  var PAGE = 10;

  // ---- DOM helpers: data only ever becomes text nodes or attribute values ----
  function h(tag, attrs) {
    var el = document.createElement(tag);
    setAttrs(el, attrs);
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }
  function s(tag, attrs) {
    var el = document.createElementNS(SVG, tag);
    setAttrs(el, attrs);
    return el;
  }
  function setAttrs(el, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      if (attrs[k] !== undefined && attrs[k] !== null) el.setAttribute(k, String(attrs[k]));
    });
  }
  function append(el, child) {
    if (child === undefined || child === null || child === false) return;
    if (Array.isArray(child)) child.forEach(function (c) { append(el, c); });
    else if (typeof child === "object") el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }
  function note(text) { return h("p", { class: "note" }, text); }

  // ---- number formatting ----
  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function fix(v, d) { return isNum(v) ? v.toFixed(d === undefined ? 3 : d) : "n/a"; }
  function pct(v, d) { return isNum(v) ? (100 * v).toFixed(d === undefined ? 1 : d) + "%" : "n/a"; }
  function int(v) { return isNum(v) ? Math.round(v).toLocaleString("en-US") : "n/a"; }
  function sci(v) { return isNum(v) ? (Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(2) : fix(v, 4)) : "n/a"; }
  function key(l, e) { return l + ":" + e; }

  // ---- diverging colour scale around 0 (ColorBrewer RdBu, blue = safe-leaning, red = unsafe) ----
  var STOPS = ["#2166ac", "#67a9cf", "#d1e5f0", "#f7f7f7", "#fddbc7", "#ef8a62", "#b2182b"];
  function hex(c) { return [1, 3, 5].map(function (i) { return parseInt(c.slice(i, i + 2), 16); }); }
  function colour(v, max) {
    if (!isNum(v)) return "#c9ccd3";
    var t = Math.max(-1, Math.min(1, v / max));
    var x = (t + 1) / 2 * (STOPS.length - 1);
    var i = Math.min(STOPS.length - 2, Math.floor(x));
    var a = hex(STOPS[i]), b = hex(STOPS[i + 1]), f = x - i;
    return "rgb(" + a.map(function (c, j) { return Math.round(c + (b[j] - c) * f); }).join(",") + ")";
  }

  // ---- shared lookups ----
  var RISK = DATA.riskDiff.value || null;
  var EXPERTS = DATA.experts.value || null;
  var byCell = new Map();
  if (RISK) RISK.forEach(function (r) { byCell.set(key(r.layer, r.expert), r); });
  var globalSet = new Set();
  if (EXPERTS) EXPERTS.global.forEach(function (e) { globalSet.add(key(e.layer, e.expert)); });
  var trainedSet = new Set();
  if (DATA.trained.value) DATA.trained.value.trained_experts.forEach(function (e) { trainedSet.add(key(e.layer, e.expert)); });
  var selectedCount = new Map();
  if (EXPERTS) EXPERTS.per_batch.forEach(function (b) {
    b.experts.forEach(function (e) {
      var k = key(e.layer, e.expert);
      selectedCount.set(k, (selectedCount.get(k) || 0) + 1);
    });
  });
  var batchCount = EXPERTS ? (isNum(EXPERTS.kept_batches) ? EXPERTS.kept_batches : EXPERTS.per_batch.length) : 0;

  // ---- page frame ----
  var SECTIONS = [
    ["config", "Run configuration", renderConfig],
    ["heatmap", "Risk difference by layer and expert", renderHeatmap],
    ["top", "Top experts", renderTop],
    ["stability", "Per-batch stability", renderStability],
    ["trained", "Trained experts", renderTrained],
    ["curves", "Training curves", renderCurves],
    ["eval", "Evaluation", renderEval],
    ["samples", "Analysis samples", renderSamples],
  ];
  var tooltip = h("div", { id: "tooltip", role: "tooltip" });

  function frame() {
    var app = document.getElementById("app");
    clear(app);
    document.title = "steermoe report: " + DATA.run;
    var nav = h("nav", null, SECTIONS.map(function (sec) { return h("a", { href: "#" + sec[0] }, sec[1]); }));
    app.appendChild(h("header", { class: "top" },
      h("h1", null, "steermoe report"), h("span", { class: "run" }, DATA.run), nav));
    var main = h("main");
    app.appendChild(main);
    SECTIONS.forEach(function (sec) {
      var el = h("section", { id: sec[0] }, h("h2", null, sec[1]));
      main.appendChild(el);
      try { sec[2](el); } catch (err) {
        el.appendChild(note("could not render this section: " + (err && err.message)));
        console.error(err);
      }
    });
    main.appendChild(h("p", { class: "count" }, "Generated " + DATA.generated + " by steermoe."));
    document.body.appendChild(tooltip);
  }

  // ---- (a) configuration ----
  function flatten(obj, prefix, out) {
    Object.keys(obj).forEach(function (k) {
      var v = obj[k], name = prefix ? prefix + "." + k : k;
      if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, name, out);
      else out.push([name, Array.isArray(v) ? JSON.stringify(v) : String(v)]);
    });
    return out;
  }
  function kvTable(rows) {
    return h("table", null, h("tbody", null, rows.map(function (r) {
      return h("tr", null, h("th", null, r[0]), h("td", { class: "mono" }, r[1]));
    })));
  }
  function summary(pairs) {
    return h("div", { class: "summary" }, pairs.filter(function (p) { return p[1] !== undefined; }).map(function (p) {
      return h("div", { class: "kv" }, h("div", { class: "k" }, p[0]), h("div", { class: "v" }, p[1]));
    }));
  }
  function renderConfig(el) {
    if (!DATA.config.value) return el.appendChild(note(DATA.config.note));
    var c = DATA.config.value, m = c.model || {}, d = c.dataset || {};
    el.appendChild(h("p", { class: "lead" }, "What this run did and on which model, from config.json."));
    el.appendChild(summary([
      ["run kind", c.kind],
      ["model", m.architecture || m.model_type],
      ["layers (MoE)", m.num_layers !== undefined ? m.num_layers + " (" + (m.moe_layers || []).length + ")" : undefined],
      ["experts × top-k", m.num_experts !== undefined ? m.num_experts + " × " + m.top_k : undefined],
      ["pairs", d.pairs], ["records", d.records],
    ]));
    var grid = h("div", { class: "grid2" });
    grid.appendChild(h("div", null, h("h3", null, "Settings"), h("div", { class: "scroll" }, kvTable(flatten(c.settings || {}, "", [])))));
    var rest = {};
    Object.keys(c).forEach(function (k) { if (k !== "settings") rest[k] = c[k]; });
    grid.appendChild(h("div", null, h("h3", null, "Model, engine and dataset"), h("div", { class: "scroll" }, kvTable(flatten(rest, "", [])))));
    el.appendChild(grid);
    el.appendChild(h("details", null, h("summary", null, "config.json as stored"), h("pre", { class: "json" }, JSON.stringify(c, null, 2))));
  }

  // ---- (b) heatmap ----
  function heatLayout() {
    var layers = EXPERTS ? EXPERTS.moe_layers.slice() : Array.from(new Set(RISK.map(function (r) { return r.layer; }))).sort(function (a, b) { return a - b; });
    var E = EXPERTS ? EXPERTS.num_experts : 1 + Math.max.apply(null, RISK.map(function (r) { return r.expert; }));
    var left = 46, top = 26;
    var avail = Math.max(600, Math.min(1260, document.documentElement.clientWidth - 90));
    var cw = Math.max(12, Math.min(44, Math.floor((avail - left) / E)));
    var ch = Math.max(18, Math.min(30, cw));
    return { layers: layers, E: E, left: left, top: top, cw: cw, ch: ch };
  }
  function renderHeatmap(el) {
    if (!RISK) return el.appendChild(note(DATA.riskDiff.note));
    var L = heatLayout();
    var max = RISK.reduce(function (m, r) { return isNum(r.risk_diff) ? Math.max(m, Math.abs(r.risk_diff)) : m; }, 0) || 1;
    el.appendChild(h("p", { class: "lead" }, "Rows are MoE layers, columns experts. Each cell is the mean over analysis batches of the risk difference: the share of unsafe (jailbreak) tokens routed to the expert minus the share of safe tokens. Red experts fire more under jailbreak. Hover a cell for its counts."));
    el.appendChild(legend(max));
    var W = L.left + L.E * L.cw + 4, H = L.top + L.layers.length * L.ch + 4;
    var svg = s("svg", { class: "heatmap", width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "risk difference heatmap" });
    var step = L.cw >= 22 ? 1 : L.cw >= 14 ? 2 : 4;
    for (var e = 0; e < L.E; e += step) {
      var t = s("text", { x: L.left + e * L.cw + L.cw / 2, y: L.top - 8, "text-anchor": "middle" });
      t.textContent = String(e);
      svg.appendChild(t);
    }
    L.layers.forEach(function (layer, row) {
      var y = L.top + row * L.ch;
      var lab = s("text", { x: L.left - 8, y: y + L.ch / 2 + 4, "text-anchor": "end" });
      lab.textContent = "L" + String(layer).padStart(2, "0");
      svg.appendChild(lab);
      for (var e = 0; e < L.E; e++) svg.appendChild(heatCell(layer, e, L.left + e * L.cw, y, L, max));
    });
    L.layers.forEach(function (layer, row) {
      for (var e = 0; e < L.E; e++) if (globalSet.has(key(layer, e))) {
        svg.appendChild(s("rect", { class: "mark", x: L.left + e * L.cw + 1.5, y: L.top + row * L.ch + 1.5, width: L.cw - 3, height: L.ch - 3, fill: "none", stroke: "#111", "stroke-width": 1.6, "pointer-events": "none" }));
      }
    });
    L.layers.forEach(function (layer, row) {
      for (var e = 0; e < L.E; e++) if (trainedSet.has(key(layer, e))) {
        svg.appendChild(s("circle", { class: "trained", cx: L.left + (e + 0.5) * L.cw, cy: L.top + (row + 0.5) * L.ch, r: Math.max(2.5, Math.min(L.cw, L.ch) / 6), fill: "#fff", stroke: "#111", "stroke-width": 1.2, "pointer-events": "none" }));
      }
    });
    svg.addEventListener("mousemove", function (ev) { showCellTip(ev); });
    svg.addEventListener("mouseleave", function () { tooltip.style.display = "none"; });
    el.appendChild(h("div", { class: "heatwrap" }, svg));
  }
  function heatCell(layer, expert, x, y, L, max) {
    var r = byCell.get(key(layer, expert));
    return s("rect", {
      class: "cell", x: x, y: y, width: L.cw, height: L.ch,
      fill: colour(r ? r.risk_diff : null, max),
      "data-layer": layer, "data-expert": expert,
      "data-label": r ? r.label : "L" + String(layer).padStart(2, "0") + "_E" + String(expert).padStart(2, "0"),
      "data-risk-diff": r && isNum(r.risk_diff) ? r.risk_diff : "",
    });
  }
  function legend(max) {
    var w = 260, svg = s("svg", { width: w + 20, height: 34 });
    var grad = s("linearGradient", { id: "rdgrad" });
    STOPS.forEach(function (c, i) { grad.appendChild(s("stop", { offset: (i / (STOPS.length - 1) * 100) + "%", "stop-color": c })); });
    var defs = s("defs"); defs.appendChild(grad); svg.appendChild(defs);
    svg.appendChild(s("rect", { x: 10, y: 2, width: w, height: 12, fill: "url(#rdgrad)", stroke: "#bbb", "stroke-width": 0.5 }));
    [[-max, 10, "start"], [0, 10 + w / 2, "middle"], [max, 10 + w, "end"]].forEach(function (t) {
      var txt = s("text", { x: t[1], y: 28, "text-anchor": t[2] });
      txt.textContent = (t[0] > 0 ? "+" : "") + fix(t[0], 2);
      svg.appendChild(txt);
    });
    var mark = s("svg", { width: 18, height: 18 });
    mark.appendChild(s("rect", { x: 2, y: 2, width: 14, height: 14, fill: "#f7f7f7", stroke: "#111", "stroke-width": 1.6 }));
    var nodata = s("svg", { width: 18, height: 18 });
    nodata.appendChild(s("rect", { x: 2, y: 2, width: 14, height: 14, fill: "#c9ccd3" }));
    var dot = s("svg", { width: 18, height: 18 });
    dot.appendChild(s("circle", { cx: 9, cy: 9, r: 3.5, fill: "#fff", stroke: "#111", "stroke-width": 1.2 }));
    return h("div", { class: "legend" },
      h("span", null, "risk_diff"), svg,
      h("span", null, "← safe-leaning · unsafe-leaning →"),
      h("span", null, mark, " global unsafe set"),
      trainedSet.size ? h("span", null, dot, " trained") : null,
      h("span", null, nodata, " no data"));
  }
  function showCellTip(ev) {
    var t = ev.target;
    if (!t || !t.getAttribute || t.getAttribute("data-layer") === null) { tooltip.style.display = "none"; return; }
    var layer = Number(t.getAttribute("data-layer")), expert = Number(t.getAttribute("data-expert"));
    var r = byCell.get(key(layer, expert));
    clear(tooltip);
    var lines = cellLines(layer, expert, r, t.getAttribute("data-label"));
    lines.forEach(function (line, i) { tooltip.appendChild(h("div", i === 0 ? { class: "t" } : null, line)); });
    tooltip.style.display = "block";
    var x = ev.clientX + 14, y = ev.clientY + 14, bw = tooltip.offsetWidth, bh = tooltip.offsetHeight;
    if (x + bw > window.innerWidth - 8) x = ev.clientX - bw - 14;
    if (y + bh > window.innerHeight - 8) y = ev.clientY - bh - 14;
    tooltip.style.left = Math.max(4, x) + "px";
    tooltip.style.top = Math.max(4, y) + "px";
  }
  function cellLines(layer, expert, r, label) {
    var head = label + "  (layer " + layer + ", expert " + expert + ")";
    if (!r) return [head, "no data"];
    var sel = selectedCount.get(key(layer, expert)) || 0;
    return [
      head,
      "risk_diff " + fix(r.risk_diff, 4) + "   95% CI [" + fix(r.ci_low, 3) + ", " + fix(r.ci_high, 3) + "]",
      "unsafe: a=" + int(r.a_unsafe) + " d=" + int(r.d_unsafe) + "  rate " + fix(r.a_unsafe_n, 3),
      "safe:   a=" + int(r.a_safe) + " d=" + int(r.d_safe) + "  rate " + fix(r.a_safe_n, 3),
      "batches with risk_diff > 0: " + pct(r.frac_positive, 0) + " of " + int(r.n_batches),
      (globalSet.has(key(layer, expert)) ? "in the global unsafe set · " : "") + (trainedSet.has(key(layer, expert)) ? "trained · " : "") + "selected in " + sel + " of " + batchCount + " batches",
    ];
  }

  // ---- (c) top experts ----
  function th(text, cls) { return h("th", cls ? { class: cls } : null, text); }
  function td(text, cls) { return h("td", cls ? { class: cls } : null, text); }
  function renderTop(el) {
    if (!RISK) return el.appendChild(note(DATA.riskDiff.note));
    var rows = RISK.slice().sort(function (a, b) { return (isNum(b.risk_diff) ? b.risk_diff : -Infinity) - (isNum(a.risk_diff) ? a.risk_diff : -Infinity); }).slice(0, 50);
    el.appendChild(h("p", { class: "lead" }, "The 50 experts with the highest mean risk difference. Rows marked global are the experts selected for training (mean risk_diff above the global threshold)." + (EXPERTS ? " Global set: " + EXPERTS.global.length + " experts." : "")));
    var head = h("tr", null, th("#", "num"), th("expert"), th("risk_diff", "num"), th("95% CI", "num"), th("unsafe rate", "num"), th("safe rate", "num"), th("unsafe a / d", "num"), th("safe a / d", "num"), th("batches > 0", "num"), th("selected in batches", "num"), th("set"));
    var body = h("tbody", null, rows.map(function (r, i) {
      var k = key(r.layer, r.expert), g = globalSet.has(k);
      return h("tr", g ? { class: "global" } : null,
        td(i + 1, "num"), td(r.label, "mono"), td(fix(r.risk_diff, 4), "num"),
        td("[" + fix(r.ci_low, 3) + ", " + fix(r.ci_high, 3) + "]", "num"),
        td(fix(r.a_unsafe_n, 3), "num"), td(fix(r.a_safe_n, 3), "num"),
        td(int(r.a_unsafe) + " / " + int(r.d_unsafe), "num"), td(int(r.a_safe) + " / " + int(r.d_safe), "num"),
        td(pct(r.frac_positive, 0), "num"), td(EXPERTS ? (selectedCount.get(k) || 0) + " / " + batchCount : "n/a", "num"),
        h("td", null, g ? h("span", { class: "badge global" }, "global") : ""));
    }));
    el.appendChild(h("div", { class: "scroll" }, h("table", { id: "top-table" }, h("thead", null, head), body)));
  }

  // ---- (d) stability ----
  function renderStability(el) {
    if (!EXPERTS) return el.appendChild(note(DATA.experts.note));
    var entries = Array.from(selectedCount.entries()).map(function (kv) {
      var p = kv[0].split(":"), r = byCell.get(kv[0]);
      return { layer: +p[0], expert: +p[1], count: kv[1], label: r ? r.label : kv[0], rd: r ? r.risk_diff : null, global: globalSet.has(kv[0]) };
    }).sort(function (a, b) { return b.count - a.count || (b.rd || 0) - (a.rd || 0); });
    var every = entries.filter(function (e) { return e.count >= batchCount; }).length;
    var globalStable = entries.filter(function (e) { return e.global && e.count >= batchCount / 2; }).length;
    el.appendChild(h("p", { class: "lead" }, "How often each expert lands in a batch's own unsafe set (risk_diff above the batch threshold, best top-k). Experts chosen in most batches are a stable finding; experts chosen once are noise."));
    el.appendChild(summary([
      ["batches", String(batchCount)],
      ["experts ever selected", String(entries.length)],
      ["selected in every batch", String(every)],
      ["union set", String(EXPERTS.union.length)],
      ["global set", String(EXPERTS.global.length)],
      ["global, selected in ≥ half", String(globalStable)],
    ]));
    if (!entries.length) return el.appendChild(note("no expert was selected in any batch"));
    var body = h("tbody", null, entries.slice(0, 40).map(function (e) {
      var share = batchCount ? e.count / batchCount : 0;
      return h("tr", e.global ? { class: "global" } : null,
        td(e.label, "mono"), td(e.count + " / " + batchCount, "num"),
        h("td", { class: "barcell" }, h("div", { class: "bar", style: "width:" + (100 * share).toFixed(1) + "%" })),
        td(fix(e.rd, 4), "num"), h("td", null, e.global ? h("span", { class: "badge global" }, "global") : ""));
    }));
    el.appendChild(h("h3", null, "Most often selected" + (entries.length > 40 ? " (40 of " + entries.length + ")" : "")));
    el.appendChild(h("div", { class: "scroll" }, h("table", { id: "stability-table" },
      h("thead", null, h("tr", null, th("expert"), th("selected", "num"), th("share of batches"), th("mean risk_diff", "num"), th("set"))), body)));
  }

  // ---- (e) trained experts ----
  function renderTrained(el) {
    if (!DATA.trained.value) return el.appendChild(note(DATA.trained.note));
    var meta = DATA.trained.value, list = meta.trained_experts;
    el.appendChild(h("p", { class: "lead" }, list.length + " experts were fine-tuned (from train/training_metadata.json); every other parameter stayed frozen."));
    var body = h("tbody", null, list.map(function (e) {
      var r = byCell.get(key(e.layer, e.expert));
      return h("tr", null, td(e.label, "mono"), td(e.layer, "num"), td(e.expert, "num"), td(r ? fix(r.risk_diff, 4) : "n/a", "num"),
        h("td", null, globalSet.has(key(e.layer, e.expert)) ? h("span", { class: "badge global" }, "global") : ""));
    }));
    el.appendChild(h("div", { class: "scroll" }, h("table", { id: "trained-table" },
      h("thead", null, h("tr", null, th("expert"), th("layer", "num"), th("expert", "num"), th("risk_diff", "num"), th("set"))), body)));
    var rest = {};
    Object.keys(meta).forEach(function (k) { if (k !== "trained_experts") rest[k] = meta[k]; });
    el.appendChild(h("details", null, h("summary", null, "other training metadata"), h("pre", { class: "json" }, JSON.stringify(rest, null, 2))));
  }

  // ---- (f) training curves ----
  function lineChart(title, xs, series, opts) {
    var box = h("div", { class: "chart" }, h("h3", null, title));
    var width = Math.max(360, Math.min(1240, document.querySelector("main").clientWidth - 60));
    var cols = [xs].concat(series.map(function (sr) { return sr.values; }));
    var ticks = function (u, vals) { return vals.map(tick); };
    var axes = [{ label: "step" }, { label: series[0].label, size: 76, values: ticks }];
    if (opts && opts.right) axes.push({ scale: "right", side: 1, label: opts.right, size: 76, values: ticks, grid: { show: false } });
    new uPlot({
      width: width, height: 240, scales: { x: { time: false } }, axes: axes,
      series: [{ label: "step" }].concat(series.map(function (sr) {
        var one = { label: sr.label, stroke: sr.colour, width: 1.6, spanGaps: true, points: { show: xs.length < 60 } };
        if (sr.scale) one.scale = sr.scale; // an explicit undefined would detach it from the y axis
        return one;
      })),
    }, cols, box);
    return box;
  }
  function tick(v) {
    if (!isNum(v)) return "";
    if (v !== 0 && (Math.abs(v) < 1e-2 || Math.abs(v) >= 1e5)) return v.toExponential(1);
    return String(+v.toPrecision(4));
  }
  function column(rows, name) { return rows.map(function (r) { return isNum(r[name]) ? r[name] : null; }); }
  function has(rows, name) { return rows.some(function (r) { return isNum(r[name]); }); }
  function renderCurves(el) {
    if (!DATA.trainLog.value) return el.appendChild(note(DATA.trainLog.note));
    var rows = DATA.trainLog.value.slice().sort(function (a, b) { return a.step - b.step; });
    if (!rows.length) return el.appendChild(note("not available: train/train_log.jsonl has no rows"));
    var xs = rows.map(function (r) { return r.step; });
    var last = rows[rows.length - 1];
    el.appendChild(summary([
      ["steps", String(rows.length)], ["epochs", isNum(last.epoch) ? String(last.epoch + 1) : undefined],
      ["final loss", sci(last.loss)], ["tokens", has(rows, "tokens") ? int(rows.reduce(function (a, r) { return a + (r.tokens || 0); }, 0)) : undefined],
      ["time", has(rows, "seconds") ? fix(rows.reduce(function (a, r) { return a + (r.seconds || 0); }, 0), 1) + " s" : undefined],
    ]));
    var loss = [{ label: "loss", values: column(rows, "loss"), colour: "#2c5fb8" }];
    if (has(rows, "router_loss")) loss.push({ label: "router loss", values: column(rows, "router_loss"), colour: "#c0392b", scale: "right" });
    el.appendChild(lineChart("Loss" + (loss.length > 1 ? " and router loss (right axis)" : ""), xs, loss, loss.length > 1 ? { right: "router loss" } : null));
    if (has(rows, "lr")) el.appendChild(lineChart("Learning rate", xs, [{ label: "lr", values: column(rows, "lr"), colour: "#2e7d32" }]));
    if (has(rows, "grad_norm")) el.appendChild(lineChart("Gradient norm", xs, [{ label: "grad norm", values: column(rows, "grad_norm"), colour: "#8e44ad" }]));
  }

  // ---- (g) evaluation ----
  var METRICS = [["attack_success", "attack success (jailbreaks obeyed)"], ["plain_refusal", "refusal of plain harmful requests"], ["benign_refusal", "refusal of benign requests"]];
  function rateText(m) {
    if (!m) return "n/a";
    var ci = isNum(m.low) && isNum(m.high) ? " [" + pct(m.low) + ", " + pct(m.high) + "]" : "";
    return pct(m.rate) + ci + (isNum(m.n) ? "  n=" + int(m.n) : "");
  }
  function renderEval(el) {
    el.appendChild(h("p", { class: "lead" }, "Rates with 95% confidence intervals. Lower attack success is better; plain refusal should stay high and benign refusal low."));
    if (!DATA.evalResults.value) el.appendChild(note(DATA.evalResults.note));
    else {
      var names = METRICS.map(function (m) { return m[0]; });
      DATA.evalResults.value.forEach(function (r) { Object.keys(r.metrics).forEach(function (k) { if (names.indexOf(k) < 0) names.push(k); }); });
      var labelOf = function (k) { var m = METRICS.filter(function (x) { return x[0] === k; })[0]; return m ? m[1] : k; };
      el.appendChild(h("div", { class: "scroll" }, h("table", { id: "eval-table" },
        h("thead", null, h("tr", null, th("model"), names.map(function (k) { return th(labelOf(k), "num"); }))),
        h("tbody", null, DATA.evalResults.value.map(function (r) {
          return h("tr", null, td(r.name, "mono"), names.map(function (k) { return td(rateText(r.metrics[k]), "num"); }));
        })))));
    }
    el.appendChild(h("h3", null, "Examples"));
    if (!DATA.evalSamples.value) return el.appendChild(note(DATA.evalSamples.note));
    var rows = DATA.evalSamples.value;
    browser(el, "eval", rows, [
      { name: "model", label: "model", values: unique(rows, "model"), get: function (r) { return r.model; } },
      { name: "set", label: "set", values: unique(rows, "set"), get: function (r) { return r.set; } },
      { name: "verdict", label: "verdict", values: ["refusal", "complied"], get: function (r) { return r.is_refusal === true ? "refusal" : r.is_refusal === false ? "complied" : ""; } },
    ], function (r) { return [r.model, r.set, r.id, r.prompt, r.response]; }, evalCard);
  }
  function unique(rows, name) { return Array.from(new Set(rows.map(function (r) { return r[name]; }))).sort(); }
  function verdictBadge(isRefusal) {
    if (isRefusal === true) return h("span", { class: "badge refusal" }, "refusal");
    if (isRefusal === false) return h("span", { class: "badge complied" }, "complied");
    return h("span", { class: "badge plain" }, "no verdict");
  }
  function textBlock(role, text, cls) {
    return h("div", { class: "msg " + (cls || "") }, h("div", { class: "role" }, role), h("div", { class: "text" }, text));
  }
  function evalCard(r) {
    return h("div", { class: "card" },
      h("div", { class: "head" }, h("span", { class: "id" }, r.id), h("span", { class: "badge plain" }, r.model), h("span", { class: "badge plain" }, r.set), verdictBadge(r.is_refusal)),
      h("div", { class: "body" }, h("div", null, textBlock("prompt", r.prompt)), h("div", null, textBlock("response", r.response, "assistant"))));
  }

  // ---- (h) analysis samples ----
  function renderSamples(el) {
    if (!DATA.samples.value) return el.appendChild(note(DATA.samples.note));
    var rows = DATA.samples.value;
    var kept = rows.filter(function (r) { return r.kept !== false; }).length;
    el.appendChild(h("p", { class: "lead" }, "Every generated sample of the analysis: the conversation the model saw, what it answered, the judge's verdict and whether quality control kept it. " + kept + " of " + rows.length + " samples kept."));
    browser(el, "samples", rows, [
      { name: "label", label: "label", values: ["safe", "unsafe"], get: function (r) { return r.label; } },
      { name: "kept", label: "kept", values: ["kept", "dropped"], get: function (r) { return r.kept === false ? "dropped" : "kept"; } },
      { name: "batch", label: "batch", values: unique(rows, "batch_idx").sort(function (a, b) { return a - b; }).map(String), get: function (r) { return String(r.batch_idx); } },
    ], function (r) { return [r.sample_id, r.pair_id, r.text, r.why || ""].concat(r.messages.map(function (m) { return m.content; })); }, sampleCard);
  }
  function sampleCard(r) {
    var v = r.verdict;
    return h("div", { class: "card" },
      h("div", { class: "head" },
        h("span", { class: "id" }, r.sample_id),
        h("span", { class: "badge " + (r.label === "unsafe" ? "unsafe" : "safe") }, r.label),
        h("span", null, "pair " + r.pair_id + " · batch " + r.batch_idx + " #" + r.in_batch_idx),
        r.kept === false ? h("span", { class: "badge dropped" }, "dropped") : h("span", { class: "badge kept" }, "kept"),
        r.why ? h("span", { class: "why" }, r.why) : null,
        v ? verdictBadge(v.isRefusal) : h("span", { class: "badge plain" }, "not judged"),
        v ? h("span", { class: "count" }, fix(v.confidence, 2) + " · " + v.reason) : null),
      h("div", { class: "body" },
        h("div", null, r.messages.map(function (m) { return textBlock(m.role, m.content); })),
        h("div", null, textBlock(r.finish_reason ? "response · finish: " + r.finish_reason : "response", r.text, "assistant"))));
  }

  // ---- a filterable, paged list of cards ----
  function browser(el, id, rows, filters, haystack, card) {
    var state = { page: 0, q: "", f: {} };
    var list = h("div", { id: id + "-list" }), count = h("span", { class: "count" });
    var prev = h("button", { type: "button" }, "← previous"), next = h("button", { type: "button" }, "next →");
    var search = h("input", { type: "search", id: id + "-search", placeholder: "search text…", "aria-label": "search" });
    var controls = h("div", { class: "controls" });
    filters.forEach(function (f) {
      var sel = h("select", { id: id + "-" + f.name, "aria-label": f.label });
      sel.appendChild(new Option("all", ""));
      f.values.forEach(function (v) { sel.appendChild(new Option(String(v), String(v))); });
      sel.addEventListener("change", function () { state.f[f.name] = sel.value; state.page = 0; draw(); });
      controls.appendChild(h("label", null, f.label + " ", sel));
    });
    search.addEventListener("input", function () { state.q = search.value.toLowerCase(); state.page = 0; draw(); });
    prev.addEventListener("click", function () { state.page--; draw(); });
    next.addEventListener("click", function () { state.page++; draw(); });
    append(controls, [search, prev, next, count]);
    el.appendChild(controls);
    el.appendChild(list);
    function matches(r) {
      var ok = filters.every(function (f) { return !state.f[f.name] || f.get(r) === state.f[f.name]; });
      return ok && (!state.q || haystack(r).some(function (t) { return String(t).toLowerCase().indexOf(state.q) >= 0; }));
    }
    function draw() {
      var shown = rows.filter(matches), pages = Math.max(1, Math.ceil(shown.length / PAGE));
      state.page = Math.max(0, Math.min(state.page, pages - 1));
      var from = state.page * PAGE, page = shown.slice(from, from + PAGE);
      clear(list);
      page.forEach(function (r) { list.appendChild(card(r)); });
      if (!shown.length) list.appendChild(note("nothing matches"));
      count.textContent = shown.length ? (from + 1) + "–" + (from + page.length) + " of " + shown.length : "0 of " + rows.length;
      prev.disabled = state.page === 0;
      next.disabled = state.page >= pages - 1;
    }
    draw();
  }

  frame();
})();
`;
