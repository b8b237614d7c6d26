// A filterable, searchable, paged list of cards (the evaluation examples and analysis samples).
import { append, clear, h, note } from "./dom.js";

const PAGE = 10;
export interface Filter<R> {
  name: string;
  label: string;
  values: string[];
  get: (r: R) => string;
}
export function browser<R>(
  el: HTMLElement,
  id: string,
  rows: R[],
  filters: Filter<R>[],
  haystack: (r: R) => (string | number)[],
  card: (r: R) => HTMLElement,
): void {
  const state = { page: 0, q: "", f: new Map<string, string>() };
  const list = h("div", { id: id + "-list" });
  const count = h("span", { class: "count" });
  const prev = h("button", { type: "button" }, "← previous");
  const next = h("button", { type: "button" }, "next →");
  const search = h("input", {
    type: "search",
    id: id + "-search",
    placeholder: "search text…",
    "aria-label": "search",
  });
  const controls = h("div", { class: "controls" });
  for (const f of filters) {
    const sel = h("select", { id: id + "-" + f.name, "aria-label": f.label });
    sel.appendChild(new Option("all", ""));
    for (const v of f.values) sel.appendChild(new Option(v, v));
    sel.addEventListener("change", () => {
      state.f.set(f.name, sel.value);
      state.page = 0;
      draw();
    });
    controls.appendChild(h("label", null, f.label + " ", sel));
  }
  search.addEventListener("input", () => {
    state.q = search.value.toLowerCase();
    state.page = 0;
    draw();
  });
  prev.addEventListener("click", () => {
    state.page--;
    draw();
  });
  next.addEventListener("click", () => {
    state.page++;
    draw();
  });
  append(controls, [search, prev, next, count]);
  el.appendChild(controls);
  el.appendChild(list);
  function matches(r: R): boolean {
    const ok = filters.every((f) => !state.f.get(f.name) || f.get(r) === state.f.get(f.name));
    return ok && (!state.q || haystack(r).some((t) => String(t).toLowerCase().includes(state.q)));
  }
  function draw(): void {
    const shown = rows.filter(matches);
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    state.page = Math.max(0, Math.min(state.page, pages - 1));
    const from = state.page * PAGE;
    const page = shown.slice(from, from + PAGE);
    clear(list);
    for (const r of page) list.appendChild(card(r));
    if (!shown.length) list.appendChild(note("nothing matches"));
    count.textContent = shown.length
      ? from + 1 + "–" + (from + page.length) + " of " + shown.length
      : "0 of " + rows.length;
    prev.disabled = state.page === 0;
    next.disabled = state.page >= pages - 1;
  }
  draw();
}
