// The Dashboard page: revenue today, this week (from Monday), this month and all time, the
// money still waiting unassociated, and a chart of revenue by day, week or month
// (GET /dashboard/revenue), with the same figures as a table. Everything is read again each
// time the page opens and at each switch of the period.

import { call } from "./api.js";
import { barChart } from "./chart.js";
import { element } from "./element.js";
import { money } from "./format.js";

const PERIODS = {
  day: { button: "Day", caption: "Revenue by day", heading: "Day" },
  week: { button: "Week", caption: "Revenue by week (from Monday)", heading: "Week of" },
  month: { button: "Month", caption: "Revenue by month", heading: "Month" },
};

const CARDS = [
  ["today", "Today", "since midnight"],
  ["this_week", "This week", "since Monday"],
  ["this_month", "This month", "since the 1st"],
  ["all_time", "All time", "every associated payment"],
];

const $ = (id) => document.getElementById(id);

function dates(zone, options) {
  return new Intl.DateTimeFormat("en-GB", { timeZone: zone, ...options });
}

/** How a bucket is named, in full (bar labels, the table) and under its bar. */
function namer(period, zone) {
  const full = {
    day: dates(zone, { day: "numeric", month: "short", year: "numeric" }),
    week: dates(zone, { day: "numeric", month: "short", year: "numeric" }),
    month: dates(zone, { month: "long", year: "numeric" }),
  }[period];
  const short = {
    day: dates(zone, { day: "numeric", month: "short" }),
    week: dates(zone, { day: "numeric", month: "short" }),
    month: dates(zone, { month: "short", year: "2-digit" }),
  }[period];
  return {
    full: (start) => (period === "week" ? "Week of " : "") + full.format(new Date(start)),
    cell: (start) => full.format(new Date(start)),
    tick: (start) => short.format(new Date(start)),
  };
}

function payments(count) {
  return `${count} ${count === 1 ? "payment" : "payments"}`;
}

export class DashboardPage {
  constructor(me, onRefused) {
    this.me = me;
    this.onRefused = onRefused;
    this.section = $("dashboard");
    this.period = "day";
    this.answer = null;
    // each load carries a number; an answer to an older load is dropped, never shown
    this.generation = 0;
    this.watcher = null;
    this.closed = false;
    // what could not be read, by what: the revenue and the count fail and recover apart
    this.errors = new Map();
  }

  /** Show the page; ``arg`` is the chart's period and range kept in the address
   * ("period=week&from=2025-09-01&to=2025-11-30"), if any. */
  async open(arg) {
    const kept = new URLSearchParams(arg || "");
    if (Object.hasOwn(PERIODS, kept.get("period"))) this.period = kept.get("period");
    this.build();
    this.from.value = kept.get("from") || "";
    this.to.value = kept.get("to") || "";
    this.section.hidden = false;
    // the chart is drawn for the room it has: again when that changes (a phone turned)
    let width = this.figure.clientWidth;
    this.watcher = new ResizeObserver(() => {
      if (this.figure.clientWidth !== width && this.answer) {
        width = this.figure.clientWidth;
        this.draw();
      }
    });
    this.watcher.observe(this.figure);
    await Promise.all([this.load(), this.count()]);
  }

  close() {
    this.closed = true;
    this.generation += 1;
    if (this.watcher) this.watcher.disconnect();
    this.section.hidden = true;
    this.section.replaceChildren();
  }

  build() {
    const title = element("h2", { id: "dashboard-title", tabindex: "-1", text: "Dashboard" });
    this.error = element("p", { id: "db-error", class: "error", role: "alert", hidden: "" });
    this.cards = element("ul", { class: "db-cards", "aria-label": "Revenue" });
    for (const [name, words, hint] of CARDS) {
      this.cards.append(
        element(
          "li",
          { class: "db-card" },
          element("h3", { id: `db-${name}-title`, text: words }),
          element("p", { class: "db-figure", "data-total": name, text: "…" }),
          element("p", { class: "hint", text: hint }),
        ),
      );
    }
    this.unassociated = element("p", {
      class: "db-figure",
      "data-total": "unassociated_total",
      text: "…",
    });
    this.waiting = element("p", { class: "hint", id: "db-unassociated-count", text: "… payments" });
    this.cards.append(
      element(
        "li",
        { class: "db-card db-card-waiting" },
        element("h3", { text: "Unassociated" }),
        this.unassociated,
        this.waiting,
      ),
    );

    this.switches = {};
    const group = element("div", { class: "views", role: "group", "aria-label": "Revenue by" });
    for (const [period, words] of Object.entries(PERIODS)) {
      const button = element("button", { type: "button", "aria-pressed": "false", text: words.button });
      button.dataset.period = period;
      button.onclick = () => this.show(period);
      this.switches[period] = button;
      group.append(button);
    }
    this.chartTitle = element("h3", { id: "db-chart-title" });
    // The API reads both dates as days of the business's calendar and draws every period
    // from the one holding `from` through the one holding `to`, `to` included; left empty,
    // it shows the last 30 days, 12 weeks or 12 months. So the days are sent as picked.
    this.from = element("input", { type: "date", id: "db-from", name: "from" });
    this.to = element("input", { type: "date", id: "db-to", name: "to" });
    const range = element(
      "form",
      { class: "db-range", "aria-label": "The chart's dates", novalidate: "" },
      element("span", { class: "db-date" }, element("label", { for: "db-from", text: "From" }), this.from),
      element("span", { class: "db-date" }, element("label", { for: "db-to", text: "To" }), this.to),
    );
    range.addEventListener("change", () => this.show(this.period));
    range.addEventListener("submit", (event) => {
      event.preventDefault();
      this.show(this.period);
    });
    this.figure = element("figure", { class: "db-chart", "aria-labelledby": "db-chart-title" });
    this.toggle = element("button", {
      type: "button",
      id: "db-table-toggle",
      "aria-expanded": "false",
      "aria-controls": "db-table-wrap",
      text: "Show as table",
    });
    this.toggle.onclick = () => this.showTable(this.toggle.getAttribute("aria-expanded") !== "true");
    this.table = element(
      "table",
      { id: "db-table" },
      element("caption", { id: "db-table-caption" }),
      element("thead"),
      element("tbody"),
    );
    // the table is always there for a screen reader; "Show as table" shows it to everyone
    this.tableWrap = element("div", { id: "db-table-wrap", class: "table-wrap db-quiet" }, this.table);
    this.section.replaceChildren(
      title,
      this.error,
      this.cards,
      element("div", { class: "toolbar db-chart-bar" }, this.chartTitle, group, range),
      this.figure,
      this.toggle,
      this.tableWrap,
    );
    this.pressed();
  }

  pressed() {
    for (const [period, button] of Object.entries(this.switches)) {
      button.setAttribute("aria-pressed", String(period === this.period));
    }
    this.chartTitle.textContent = PERIODS[this.period].caption;
  }

  showTable(shown) {
    this.toggle.setAttribute("aria-expanded", String(shown));
    this.toggle.textContent = shown ? "Hide the table" : "Show as table";
    this.tableWrap.classList.toggle("db-quiet", !shown);
  }

  async show(period) {
    this.period = period;
    this.pressed();
    // the address names the period and the dates, so a reload shows the same chart
    const kept = this.query();
    if (period === "day") kept.delete("period");
    // (URLSearchParams.size is too new for some browsers still in use: the text tells)
    const text = kept.toString();
    const hash = text ? `#/dashboard/${encodeURIComponent(text)}` : "#/dashboard";
    if (location.hash !== hash) history.replaceState(null, "", hash);
    await this.load();
  }

  /** period=...&from=...&to=... as the API reads them. */
  query() {
    const params = new URLSearchParams({ period: this.period });
    if (this.from.value) params.set("from", this.from.value);
    if (this.to.value) params.set("to", this.to.value);
    return params;
  }

  async load() {
    const generation = ++this.generation;
    this.figure.setAttribute("aria-busy", "true");
    try {
      const answer = await call("GET", `/dashboard/revenue?${this.query()}`);
      if (generation !== this.generation) return;
      this.answer = answer;
      this.cardsFrom(answer);
      this.draw();
      this.fail("revenue", null);
    } catch (error) {
      if (generation !== this.generation) return;
      // a chart of other dates than those asked for would mislead: it goes until they are fixed
      this.answer = null;
      this.figure.replaceChildren();
      this.table.tBodies[0].replaceChildren();
      this.fail("revenue", error, "The revenue could not be loaded");
    } finally {
      if (generation === this.generation) this.figure.removeAttribute("aria-busy");
    }
  }

  async count() {
    try {
      const answer = await call("GET", "/payments/count?status=unassociated");
      if (this.closed) return;
      this.waiting.textContent = `${payments(answer.count)} waiting`;
      this.fail("count", null);
    } catch (error) {
      if (this.closed) return;
      this.waiting.textContent = "? payments";
      this.fail("count", error, "The unassociated count could not be loaded");
    }
  }

  cardsFrom(answer) {
    for (const [name] of CARDS) {
      this.cards.querySelector(`[data-total="${name}"]`).textContent = money(answer[name], answer.currency);
    }
    this.unassociated.textContent = money(answer.unassociated_total, answer.currency);
  }

  /** The chart and its table, from the last answer, for the room the chart has now. */
  draw() {
    const answer = this.answer;
    const names = namer(answer.period, answer.timezone || this.me.timezone);
    const worded = (bucket) => `${money(bucket.amount, answer.currency)}, ${payments(bucket.count)}`;
    const bars = answer.series.map((bucket) => ({
      amount: bucket.amount,
      label: `${names.full(bucket.start)}: ${worded(bucket)}`,
      tick: names.tick(bucket.start),
    }));
    const caption = PERIODS[answer.period].caption;
    const chart = barChart({
      bars,
      money: (amount) => money(amount, answer.currency),
      width: this.figure.clientWidth || 600,
      title: `${caption}; the same figures are in the table below`,
    });
    const nothing = answer.series.every((bucket) => bucket.count === 0);
    const plural = { day: "days", week: "weeks", month: "months" }[answer.period];
    this.figure.replaceChildren(chart);
    if (nothing) {
      this.figure.append(
        element("figcaption", { class: "hint", text: `No payments on these ${plural}: pick other dates above.` }),
      );
    }

    const head = element("tr");
    for (const [words, kind] of [[PERIODS[answer.period].heading], ["Revenue", "amount"], ["Payments", "amount"]]) {
      head.append(element("th", { scope: "col", class: kind || "", text: words }));
    }
    this.table.tHead.replaceChildren(head);
    this.table.caption.textContent = `${caption}, oldest first`;
    this.table.tBodies[0].replaceChildren(
      ...answer.series.map((bucket) => {
        const row = element("tr");
        row.append(
          element("th", { scope: "row", "data-label": PERIODS[answer.period].heading, text: names.cell(bucket.start) }),
          element("td", { class: "amount", "data-label": "Revenue", text: money(bucket.amount, answer.currency) }),
          element("td", { class: "amount", "data-label": "Payments", text: String(bucket.count) }),
        );
        return row;
      }),
    );
  }

  /** Show (or, with no ``error``, clear) what went wrong reading ``what``. */
  fail(what, error, words = "") {
    if (error && error.status === 401) {
      this.onRefused(error.message);
      return;
    }
    if (error) this.errors.set(what, `${words}: ${error.message}`);
    else this.errors.delete(what);
    this.error.textContent = [...this.errors.values()].join(" ");
    this.error.hidden = this.errors.size === 0;
  }
}
