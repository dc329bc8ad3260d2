// The Transactions page: every balance movement and every attempt that moved no money
// (GET /transactions), newest first, a page at a time, narrowed by kind, status, dates,
// account and text. The filters apply as they change and are kept in the address
// (#/transactions/kind=purchase&from=2025-11-01), so a reload or a shared link shows the same.

import { element } from "./element.js";
import { hideError, showError } from "./error-line.js";
import { dateTime, money } from "./format.js";
import { Pages, readPage } from "./paged.js";

const KINDS = {
  payment_credit: "Payment received",
  manual_payment: "Payment made by hand",
  disassociation: "Disassociation",
  reversal: "Reversed by the provider",
  purchase: "Purchase",
  failed_attempt: "Failed attempt",
};
const STATUSES = { completed: "Completed", failed: "Failed", cancelled: "Cancelled" };

// What the address may carry, in the order the form shows it.
const FILTERS = ["kind", "status", "from", "to", "account", "q"];

const COLUMNS = [
  ["When", (t, me) => dateTime(t.at, me.timezone), "when"],
  ["Kind", (t) => KINDS[t.kind] || t.kind],
  ["Status", (t) => STATUSES[t.status] || t.status, "status"],
  ["Account", (t) => t.account_number || ""],
  ["Amount", (t, me) => signed(t.amount, t.currency || me.currency), "amount"],
  ["Code", (t) => t.code || t.voucher_code || ""],
  ["Phone", (t) => t.phone || ""],
  ["Note", (t) => note(t), "note"],
];

/** "+KES 100.00" for money in, "-KES 40.00" for money out, "KES 0.00" for none. */
function signed(amount, currency) {
  const shown = money(amount, currency);
  return /^[1-9]|^0\.\d*[1-9]/.test(amount) ? `+${shown}` : shown;
}

/** What happened, in words: the provider's result for an attempt, else the entry's note. */
function note(t) {
  if (t.status !== "completed") {
    const code = t.result_code === null || t.result_code === undefined ? "" : ` (result ${t.result_code})`;
    return `${t.result_desc || "No reason given"}${code}`;
  }
  return t.note || "";
}

/** "2025-11-03" -> "2025-11-04": the day after, counted on the calendar (no clock, no zone). */
function dayAfter(day) {
  const [year, month, date] = day.split("-").map(Number);
  const next = new Date(Date.UTC(year, month - 1, date + 1));
  return next.toISOString().slice(0, 10);
}

const $ = (id) => document.getElementById(id);

function field(id, label, control) {
  control.id = id;
  control.name = id.replace(/^tx-/, "");
  return element("div", { class: "tx-field" }, element("label", { for: id, text: label }), control);
}

function select(choices, all) {
  const box = element("select");
  box.append(element("option", { value: "", text: all }));
  for (const [value, words] of Object.entries(choices)) box.append(element("option", { value, text: words }));
  return box;
}

export class TransactionsPage {
  constructor(me, onRefused) {
    this.me = me;
    this.onRefused = onRefused;
    this.section = $("transactions");
    this.pages = null;
  }

  /** Show the page; ``arg`` is the filters kept in the address ("kind=purchase&..."). */
  async open(arg) {
    this.build();
    const kept = new URLSearchParams(arg || "");
    for (const name of FILTERS) {
      const value = kept.get(name);
      if (value) this.controls[name].value = value;
    }
    this.section.hidden = false;
    await this.load(true);
  }

  close() {
    if (this.pages) this.pages.stop();
    this.section.hidden = true;
    this.section.replaceChildren();
  }

  build() {
    const title = element("h2", { id: "transactions-title", tabindex: "-1", text: "Transactions" });
    this.controls = {
      kind: select(KINDS, "All kinds"),
      status: select(STATUSES, "All statuses"),
      from: element("input", { type: "date" }),
      to: element("input", { type: "date" }),
      account: element("input", { type: "text", autocomplete: "off", spellcheck: "false", placeholder: "ACC1042" }),
      q: element("input", {
        type: "search",
        autocomplete: "off",
        spellcheck: "false",
        placeholder: "Phone, code or amount",
      }),
    };
    this.form = element(
      "form",
      { class: "tx-filters", "aria-label": "Filter the transactions", novalidate: "" },
      field("tx-kind", "Kind", this.controls.kind),
      field("tx-status", "Status", this.controls.status),
      field("tx-from", "From", this.controls.from),
      field("tx-to", "To (including)", this.controls.to),
      field("tx-account", "Account", this.controls.account),
      field("tx-q", "Search", this.controls.q),
      element("button", { type: "button", id: "tx-clear", text: "Clear filters" }),
    );
    // a filter applies as soon as it changes; Enter in a text box applies it too
    this.form.addEventListener("change", () => this.apply());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.apply();
    });
    this.form.querySelector("#tx-clear").onclick = () => {
      for (const control of Object.values(this.controls)) control.value = "";
      this.apply();
      this.controls.kind.focus();
    };
    this.error = element("p", { id: "tx-error", class: "error", role: "alert", hidden: "" });
    this.table = element(
      "table",
      { id: "tx-table" },
      element("caption", { id: "tx-caption", text: "Transactions, newest first" }),
      element("thead", {}, this.header()),
      element("tbody"),
    );
    this.status = element("p", { id: "tx-status", class: "hint", role: "status", "aria-live": "polite" });
    this.empty = element("p", { id: "tx-empty", hidden: "", text: "No transactions match these filters." });
    this.more = element("button", { type: "button", id: "tx-more", hidden: "", text: "More" });
    this.section.replaceChildren(
      title,
      this.form,
      this.error,
      element("div", { class: "table-wrap" }, this.table),
      this.empty,
      this.status,
      this.more,
    );
    this.pages = new Pages({
      read: (cursor) => readPage("/transactions", this.query(), cursor),
      more: this.more,
      next: () => this.load(false),
      took: () => {
        this.render();
        hideError(this.error);
      },
      failed: (error) => {
        if (!showError(this.error, "The transactions could not be loaded", error, this.onRefused)) return;
        // what was shown is for other filters: it goes, and the API says what is wrong
        this.pages.clear();
        this.render();
        this.empty.hidden = true;
        this.status.textContent = "";
      },
    });
  }

  header() {
    const row = element("tr");
    for (const [name, , kind] of COLUMNS) {
      const th = element("th", { scope: "col", text: name });
      if (kind) th.className = kind;
      row.append(th);
    }
    return row;
  }

  /** The query the filters on the screen make, as the API reads it. */
  query() {
    const params = new URLSearchParams();
    const value = (name) => this.controls[name].value.trim();
    if (value("kind")) params.set("kind", value("kind"));
    if (value("status")) params.set("status", value("status"));
    // The API reads a bare date as midnight in the business's time zone, and `to` as the
    // moment the log stops (exclusive). So "From 3 Nov" is sent as from=2025-11-03 (the
    // start of that local day) and "To 5 Nov", which means the whole of 5 Nov, as
    // to=2025-11-06: the local day is the business's, whatever zone the browser is in.
    if (value("from")) params.set("from", value("from"));
    if (value("to")) params.set("to", /^\d{4}-\d{2}-\d{2}$/.test(value("to")) ? dayAfter(value("to")) : value("to"));
    if (value("account")) params.set("account", value("account"));
    if (value("q")) params.set("q", value("q"));
    return params;
  }

  /** The filters as they are on the screen, into the address (no new history entry, no reload). */
  remember() {
    const kept = new URLSearchParams();
    for (const name of FILTERS) {
      const value = this.controls[name].value.trim();
      if (value) kept.set(name, value);
    }
    // (URLSearchParams.size is too new for some browsers still in use: the text tells)
    const text = kept.toString();
    const hash = text ? `#/transactions/${encodeURIComponent(text)}` : "#/transactions";
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  async apply() {
    this.remember();
    await this.load(true);
  }

  async load(fresh) {
    this.status.textContent = "Loading…";
    await this.pages.load(fresh);
  }

  render() {
    this.table.tBodies[0].replaceChildren(...this.pages.items.map((t) => this.row(t)));
    this.empty.hidden = this.pages.items.length > 0;
    this.more.hidden = !this.pages.cursor;
    const n = this.pages.items.length;
    this.status.textContent = n
      ? `${n} ${n === 1 ? "transaction" : "transactions"} shown${this.pages.cursor ? "; more below" : ""}.`
      : "";
  }

  row(t) {
    const tr = element("tr");
    tr.dataset.id = t.id;
    tr.dataset.kind = t.kind;
    tr.dataset.status = t.status;
    if (t.status !== "completed") tr.className = `tx-${t.status}`;
    for (const [name, value, kind] of COLUMNS) {
      const td = element("td");
      td.dataset.label = name;
      if (kind) td.className = kind;
      const text = value(t, this.me);
      if (kind === "status") td.append(element("span", { class: `tx-badge tx-badge-${t.status}`, text }));
      else td.textContent = text;
      tr.append(td);
    }
    return tr;
  }
}
