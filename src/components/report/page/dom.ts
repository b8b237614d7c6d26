// Element builders for the report page. Data only ever becomes text nodes or attribute values,
// never markup: that is what keeps hostile dataset text inert.

const SVG = "http://www.w3.org/2000/svg";
export type Child = Node | string | number | false | null | undefined | readonly Child[];
export type Attrs = Record<string, string | number | null | undefined> | null;
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}
export function s<K extends keyof SVGElementTagNameMap>(tag: K, attrs?: Attrs): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  return el;
}
function setAttrs(el: Element, attrs: Attrs | undefined): void {
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
}
export function append(el: Node, child: Child): void {
  if (child === undefined || child === null || child === false) return;
  if (Array.isArray(child)) for (const c of child as readonly Child[]) append(el, c);
  else if (child instanceof Node) el.appendChild(child);
  else el.appendChild(document.createTextNode(String(child)));
}
export function clear(el: Node): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}
export function note(text: string): HTMLElement {
  return h("p", { class: "note" }, text);
}
export function lead(text: string): HTMLElement {
  return h("p", { class: "lead" }, text);
}
export function jsonDetails(title: string, value: unknown): HTMLElement {
  return h(
    "details",
    null,
    h("summary", null, title),
    h("pre", { class: "json" }, JSON.stringify(value, null, 2)),
  );
}
/** A scrolling table; `head` holds the header row's cells, if it has one. */
export function table(id: string | null, head: Child, rows: Child): HTMLElement {
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      id ? { id } : null,
      head ? h("thead", null, h("tr", null, head)) : null,
      h("tbody", null, rows),
    ),
  );
}
export function th(text: string, cls?: string): HTMLElement {
  return h("th", cls ? { class: cls } : null, text);
}
export function td(text: Child, cls?: string): HTMLElement {
  return h("td", cls ? { class: cls } : null, text);
}
export function kvTable(rows: [string, string][]): HTMLElement {
  return table(
    null,
    null,
    rows.map(([k, v]) => h("tr", null, h("th", null, k), h("td", { class: "mono" }, v))),
  );
}
export function summary(pairs: [string, string | undefined][]): HTMLElement {
  return h(
    "div",
    { class: "summary" },
    pairs
      .filter((p) => p[1] !== undefined)
      .map(([k, v]) => h("div", { class: "kv" }, h("div", { class: "k" }, k), h("div", { class: "v" }, v))),
  );
}
