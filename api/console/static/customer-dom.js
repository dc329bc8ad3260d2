// What the Customers pages build their screens from: elements made in one call, and a
// table read a page at a time with its own More button.

import { Pages } from "./paged.js";

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
    this.rowData = rowData || (() => ({}));
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
    this.element = el(
      "div",
      { className: "paged" },
      el("div", { className: "table-wrap" }, this.table),
      this.empty,
      this.loading,
      this.more,
    );
    // read again after a change, the table stays as it is until the answer comes
    this.pages = new Pages({
      read: load,
      more: this.more,
      loading: this.loading,
      quiet: true,
      took: () => this.render(),
      failed: fail,
    });
  }

  /** Read the first page again (``fresh``), or the next one. */
  load(fresh = true) {
    return this.pages.load(fresh);
  }

  render() {
    this.body.replaceChildren(
      ...this.pages.items.map((item) =>
        el(
          "tr",
          { dataset: this.rowData(item) },
          ...this.columns.map(([name, value, kind]) =>
            el("td", { className: kind || "", dataset: { label: name } }, value(item)),
          ),
        ),
      ),
    );
    this.empty.hidden = this.pages.items.length > 0;
    this.more.hidden = !this.pages.cursor;
  }

  stop() {
    this.pages.stop();
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
