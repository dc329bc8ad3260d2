// The Payments page: the associated list (Regular) or the unassociated one, newest first,
// a page at a time; a search box; and, for roles that may change things, Make Payment,
// Associate and Disassociate. After every change the lists and the count are read again.

import { call, newKey } from "./api.js";
import { AssociateDialog, dialog, MakePaymentDialog } from "./actions.js";
import { hideError, showError } from "./error-line.js";
import { dateTime, money, reason } from "./format.js";
import { readPage, SearchedList } from "./paged.js";
import { matches } from "./search.js";

const ASSOCIATED = "associated";
const UNASSOCIATED = "unassociated";

/** What the operator typed as the receipt of a payment recorded by hand, when momo gave
 * the payment a code of its own (a provider's receipt typed there is the code itself). */
function typedReceipt(p) {
  return p.reference && p.reference !== p.code ? p.reference : null;
}

/** The payment's code, and the receipt typed for it: "MANB9C676AA8D1A · cash-0042". */
function codeOf(p) {
  const typed = typedReceipt(p);
  return typed ? `${p.code} · ${typed}` : p.code;
}

const COLUMNS = {
  [ASSOCIATED]: [
    ["#", (p) => String(p.id)],
    ["Customer", (p) => p.account_number || ""],
    ["Code", codeOf],
    ["Phone", (p) => p.phone || ""],
    ["Amount", (p, me) => money(p.amount, p.currency || me.currency), "amount"],
    ["Date Paid", (p, me) => dateTime(p.paid_at, me.timezone)],
  ],
  [UNASSOCIATED]: [
    ["#", (p) => String(p.id)],
    ["Name", (p) => p.payer_name || ""],
    ["Amount", (p, me) => money(p.amount, p.currency || me.currency), "amount"],
    ["Code", codeOf],
    ["Date Paid", (p, me) => dateTime(p.paid_at, me.timezone)],
    ["Why", (p) => reason(p.reason, p.candidates)],
  ],
};

const $ = (id) => document.getElementById(id);

/** Newest paid first, then the higher id: the API's own order. */
function newestFirst(a, b) {
  return Date.parse(b.paid_at) - Date.parse(a.paid_at) || b.id - a.id;
}

/** While searching: every loaded row that fits the text and every row the server found
 * (for exactly this text, or, until it answers, for the text before that fit this one). */
function matching(q, { items, found, answered }) {
  const answer = new Map(found.map((p) => [p.id, p]));
  const pool = new Map(items.map((p) => [p.id, p]));
  for (const [id, payment] of answer) if (!pool.has(id)) pool.set(id, payment);
  return [...pool.values()].filter((p) => matches(p, q) || (answered && answer.has(p.id))).sort(newestFirst);
}

export class PaymentsPage {
  constructor(me, onRefused) {
    this.me = me;
    this.onRefused = onRefused;
    this.canChange = me.role === "operator" || me.role === "admin";
    this.view = ASSOCIATED;
    this.section = $("payments");
    this.table = $("payments-table");
    this.regular = $("show-regular");
    this.unassociated = $("show-unassociated");
    this.box = $("search");
    this.make = $("make-payment");
    this.regular.onclick = () => this.show(ASSOCIATED);
    this.unassociated.onclick = () => this.show(UNASSOCIATED);
    this.list = new SearchedList({
      read: (q, cursor) => readPage("/payments", q ? { status: this.view, q } : { status: this.view }, cursor),
      box: this.box,
      body: this.table.tBodies[0],
      more: $("more"),
      loading: $("loading"),
      empty: $("empty"),
      noMatch: $("no-match"),
      status: $("search-status"),
      row: (payment) => this.row(payment),
      matching,
      said: (n, answered, more) =>
        answered
          ? more
            ? `${n} ${n === 1 ? "payment matches" : "payments match"} so far; More shows older ones.`
            : `${n} ${n === 1 ? "payment matches" : "payments match"}, older ones included.`
          : `${n} on the screen ${n === 1 ? "matches" : "match"}; looking for older ones…`,
      took: () => this.clearError(),
      failed: (error, searching) =>
        this.fail(searching ? "Older payments could not be searched" : "The payments could not be loaded", error),
    });
    this.make.hidden = !this.canChange;
    if (this.canChange) {
      const onRefused = (detail) => this.onRefused(detail);
      this.associating = dialog(AssociateDialog, me, { onRefused, done: (answer) => this.associated(answer) });
      this.making = dialog(MakePaymentDialog, me, {
        onRefused,
        done: (answer, status) => this.made(answer, status),
      });
      this.make.onclick = () => this.making.open(this.make);
    }
  }

  async open() {
    this.section.hidden = false;
    this.box.value = "";
    await Promise.all([this.show(ASSOCIATED), this.count()]);
  }

  close() {
    this.list.stop();
    this.section.hidden = true;
    this.make.hidden = true;
    this.make.onclick = null;
    this.box.value = "";
    this.box.oninput = null;
    this.table.tHead.replaceChildren();
    this.table.tBodies[0].replaceChildren();
    for (const shown of [$("associate"), $("make"), $("confirm")]) if (shown.open) shown.close();
  }

  async show(view) {
    this.view = view;
    this.regular.setAttribute("aria-pressed", String(view === ASSOCIATED));
    this.unassociated.setAttribute("aria-pressed", String(view === UNASSOCIATED));
    $("payments-caption").textContent =
      view === ASSOCIATED ? "Associated payments, newest first" : "Unassociated payments, newest first";
    this.header();
    await this.list.refresh();
  }

  header() {
    const row = document.createElement("tr");
    const columns = COLUMNS[this.view].map(([name, , kind]) => [name, kind]);
    if (this.canChange) columns.push(["Action"]);
    for (const [name, kind] of columns) {
      const th = document.createElement("th");
      th.scope = "col";
      if (kind) th.className = kind;
      th.textContent = name;
      row.append(th);
    }
    this.table.tHead.replaceChildren(row);
  }

  row(payment) {
    const tr = document.createElement("tr");
    tr.dataset.paymentId = String(payment.id);
    for (const [name, value, kind] of COLUMNS[this.view]) {
      const td = document.createElement("td");
      td.dataset.label = name;
      if (kind) td.className = kind;
      td.textContent = value(payment, this.me);
      tr.append(td);
    }
    if (this.canChange) {
      const td = document.createElement("td");
      td.dataset.label = "Action";
      const button = document.createElement("button");
      button.type = "button";
      if (this.view === ASSOCIATED) {
        button.className = "danger";
        button.textContent = "Disassociate";
        button.setAttribute("aria-label", `Disassociate payment ${payment.id}`);
        button.onclick = () => this.disassociate(payment, button);
      } else {
        button.textContent = "Associate";
        button.setAttribute("aria-label", `Associate payment ${payment.id}`);
        button.onclick = () => this.associating.open(payment, button);
      }
      td.append(button);
      tr.append(td);
    }
    return tr;
  }

  async count() {
    const label = $("unassociated-count");
    try {
      const answer = await call("GET", `/payments/count?status=${UNASSOCIATED}`);
      label.textContent = String(answer.count);
      this.unassociated.setAttribute("aria-label", `Unassociated: ${answer.count} payments`);
    } catch (error) {
      label.textContent = "?";
      this.fail("The unassociated count could not be loaded", error);
    }
  }

  /** Everything on the screen read again after a change: the list, the server's search
   * matches and the count. */
  async refresh() {
    await Promise.all([this.list.refresh(), this.count()]);
  }

  async associated(answer) {
    const payment = answer.payment;
    const currency = payment.currency || this.me.currency;
    this.notice(
      `Payment #${payment.id} (${payment.code}, ${money(payment.amount, currency)}) was associated ` +
        `with ${payment.account_number}; their balance is now ${money(answer.balance, currency)}.` +
        (answer.message ? ` ${answer.message}.` : ""),
    );
    this.clearError();
    await this.refresh();
    $("payments-title").focus();
  }

  async made(answer, status) {
    const currency = answer.currency || this.me.currency;
    const amount = money(answer.amount, currency);
    const balance = money(answer.balance, currency);
    this.notice(
      status === 201
        ? `Payment #${answer.id} (${answer.code}, ${amount}` +
            `${typedReceipt(answer) ? `, receipt ${typedReceipt(answer)}` : ""}) was recorded for ` +
            `${answer.account_number}; their balance is now ${balance}.`
        : `Receipt ${answer.code} was already known as payment #${answer.id} (${amount}); it is ` +
            `with ${answer.account_number}, whose balance is ${balance}.`,
    );
    this.clearError();
    await this.refresh();
  }

  async disassociate(payment, button) {
    const dialog = $("confirm");
    $("confirm-text").textContent =
      `Disassociate payment #${payment.id} (${payment.code}, ` +
      `${money(payment.amount, payment.currency || this.me.currency)}) from ` +
      `${payment.account_number}? The amount is taken off the customer's balance.`;
    dialog.returnValue = "";
    dialog.showModal();
    const choice = await new Promise((resolve) =>
      dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true }),
    );
    if (choice !== "ok") {
      button.focus();
      return;
    }
    button.disabled = true;
    try {
      const answer = await call("POST", `/payments/${payment.id}/disassociate`, { body: {}, key: newKey() });
      const balance = money(answer.balance, answer.payment.currency || this.me.currency);
      this.notice(
        answer.message ||
          `Payment #${payment.id} was disassociated from ${payment.account_number}; ` +
            `their balance is now ${balance}.`,
      );
      this.clearError();
    } catch (error) {
      button.disabled = false;
      this.fail(`Payment #${payment.id} was not disassociated`, error);
      return;
    }
    await this.refresh();
    $("payments-title").focus?.();
  }

  notice(text) {
    $("notice").textContent = text;
  }

  clearError() {
    hideError($("error"));
  }

  fail(what, error) {
    showError($("error"), what, error, this.onRefused);
  }
}
