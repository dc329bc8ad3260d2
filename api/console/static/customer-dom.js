// What the Customers pages build their screens from: elements made in one call, and a
// table read a page at a time with its own More button.

import { moreOnScroll } from "./more.js";

/** ``el("p", {className: "hint"}, "text", child)``: properties are set as given, except
 * ``attrs`` (attributes) and ``dataset``. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  const { attrs = {}, dataset = {}, ...rest } = props;
  Object.assign(node, rest);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  Object.assign(node.dataset, dataset);
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

/** A table filled a page at a time from ``load(cursor)`` (an API page: items and
 * next_cursor). ``columns`` are [heading, value(item) -> text or node, class]; each cell
 * carries its heading, so a phone shows each row as a card of labelled lines. */
export class PagedTable {
  constructor({ id, caption, columns, empty, load, fail, rowData }) {
    this.columns = columns;
    this.loader = load;
    this.fail = fail;
    this.rowData = rowData || (() => ({}));
    this.items = [];
    this.cursor = null;
    // each read carries a number: an answer to an older one is dropped, never shown
    this.generation = 0;
    const head = el(
      "tr",
      {},
      ...columns.map(([name, , kind]) => el("th", { scope: "col", className: kind || "" }, name)),
    );
    this.body = el("tbody");
    this.table = el("table", { id }, el("caption", {}, caption), el("thead", {}, head), this.body);
    this.empty = el("p", { className: "hint", hidden: true }, empty);
    this.loading = el("p", { className: "hint", hidden: true }, "Loading…");
    this.more = el("button", { type: "button", hidden: true, className: "more" }, "More");
    this.more.setAttribute("aria-label", `More: ${caption}`);
    this.more.onclick = () => this.load(false);
    this.element = el(
      "div",
      { className: "paged" },
      el("div", { className: "table-wrap" }, this.table),
      this.empty,
      this.loading,
      this.more,
    );
    this.unwatch = moreOnScroll(this.more);
  }

  /** Read the first page again (``fresh``), or the next one. */
  async load(fresh = true) {
    const generation = ++this.generation;
    this.loading.hidden = !fresh || this.items.length > 0;
    this.more.disabled = true;
    try {
      const page = await this.loader(fresh ? null : this.cursor);
      if (generation !== this.generation) return;
      this.items = fresh ? page.items : [...this.items, ...page.items];
      this.cursor = page.next_cursor;
      this.render();
    } catch (error) {
      if (generation === this.generation) this.fail(error);
    } finally {
      if (generation === this.generation) {
        this.loading.hidden = true;
        this.more.disabled = false;
      }
    }
  }

  render() {
    this.body.replaceChildren(
      ...this.items.map((item) =>
        el(
          "tr",
          { dataset: this.rowData(item) },
          ...this.columns.map(([name, value, kind]) =>
            el("td", { className: kind || "", dataset: { label: name } }, value(item)),
          ),
        ),
      ),
    );
    this.empty.hidden = this.items.length > 0;
    this.more.hidden = !this.cursor;
  }

  stop() {
    this.generation += 1;
    this.unwatch();
  }
}

/** The address of ``account``'s page. */
export function customerHref(account) {
  return `#/customers/${encodeURIComponent(account)}`;
}

/** "1 day", "2 hours 30 minutes": a plan's validity in words. */
export function duration(minutes) {
  const parts = [];
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  const rest = minutes % 60;
  for (const [n, unit] of [
    [days, "day"],
    [hours, "hour"],
    [rest, "minute"],
  ]) {
    if (n) parts.push(`${n} ${unit}${n === 1 ? "" : "s"}`);
  }
  return parts.join(" ") || "0 minutes";
}

/** The phones typed one a line or separated by commas (or semicolons), blanks dropped. */
export function phonesTyped(text) {
  return text
    .split(/[\n,;]+/)
    .map((phone) => phone.trim())
    .filter(Boolean);
}
