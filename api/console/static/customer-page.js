// One customer's page (#/customers/<account>): name, account, phones and balance; their
// purchases, transactions and payments, newest first, a page at a time; and, for roles
// that may change things, Edit and Buy a plan. After every change the balance and the
// lists are read again, in place.

import { call } from "./api.js";
import { BuyPlanDialog, EditCustomerDialog } from "./customer-dialogs.js";
import { el, PagedTable } from "./customer-dom.js";
import { hideError, showError } from "./error-line.js";
import { dateTime, money } from "./format.js";
import { readPage } from "./paged.js";

const PAGE = 20;

const KINDS = {
  payment_credit: "Payment received",
  manual_payment: "Payment made by hand",
  disassociation: "Payment disassociated",
  reversal: "Payment reversed by the provider",
  purchase: "Plan bought",
  failed_attempt: "Failed attempt",
};

/** "+KES 1,500.00" for money in, "-KES 50.00" for money out. */
function signed(amount, currency) {
  const shown = money(amount, currency);
  return /^-|^0*(\.0*)?$/.test(amount) ? shown : `+${shown}`;
}

/** What a transaction was about: its receipt code, its voucher, or its note. */
function about(entry) {
  if (entry.voucher_code) return `Voucher ${entry.voucher_code}`;
  return entry.code || entry.note || "";
}

export class CustomerView {
  constructor(me, section, account, { onRefused, canChange, notice }) {
    this.me = me;
    this.section = section;
    this.account = account;
    this.onRefused = onRefused;
    this.canChange = canChange;
    this.told = notice;
    this.closed = false;
    this.customer = null;
    // each read of the customer carries a number: an older answer is dropped
    this.generation = 0;
    this.tables = [];
  }

  path(rest = "") {
    return `/customers/${encodeURIComponent(this.account)}${rest}`;
  }

  async open() {
    this.title = el("h2", { id: "customers-title", tabIndex: -1 }, this.account);
    const back = el("p", { className: "back" }, el("a", { href: "#/customers" }, "← All customers"));
    this.section.replaceChildren(back, this.title, el("p", { className: "hint" }, "Loading…"));
    let customer;
    try {
      customer = await call("GET", this.path());
    } catch (error) {
      if (this.closed) return;
      if (error.status === 401) this.onRefused(error.message);
      else if (error.status === 404) this.unknown(back);
      else this.unreadable(back, error);
      return;
    }
    if (this.closed) return;
    // the account as momo spells it (the address may have it in another letter case)
    this.account = customer.account_number;
    this.build(back);
    this.show(customer);
    this.title.focus();
    await Promise.all(this.tables.map((table) => table.load()));
  }

  unknown(back) {
    this.title.textContent = "No such customer";
    this.section.replaceChildren(
      this.title,
      el("p", { className: "error", attrs: { role: "alert" } }, `No customer has account number ${this.account}.`),
      el("p", {}, "Check the number, or find the customer by name or phone on the Customers page."),
      back,
    );
    this.title.focus();
  }

  unreadable(back, error) {
    this.section.replaceChildren(
      back,
      this.title,
      el(
        "p",
        { className: "error", attrs: { role: "alert" } },
        `Customer ${this.account} could not be loaded: ${error.message} Reload the page to try again.`,
      ),
    );
  }

  build(back) {
    const toolbar = el("div", { className: "toolbar" }, this.title);
    const dialogs = [];
    if (this.canChange) {
      const onRefused = (detail) => this.onRefused(detail);
      this.editing = new EditCustomerDialog({ onRefused, done: (answer) => this.edited(answer) });
      this.buying = new BuyPlanDialog({ onRefused, done: (answer) => this.bought(answer) });
      const edit = el("button", { type: "button", id: "edit-customer" }, "Edit");
      edit.setAttribute("aria-label", "Edit name and phones");
      edit.onclick = () => this.customer && this.editing.open(this.customer, edit);
      const buy = el("button", { type: "button", className: "primary", id: "buy-plan" }, "Buy a plan");
      buy.onclick = () => this.customer && this.buying.open(this.customer, buy);
      // the two go to a new line together on a narrow screen
      toolbar.append(el("div", { className: "customer-actions" }, edit, buy));
      dialogs.push(this.editing.dialog, this.buying.dialog);
    }
    this.accountText = el("dd");
    this.phonesText = el("dd");
    this.balance = el("p", { id: "customer-balance", className: "balance-amount" });
    const facts = el(
      "dl",
      { className: "customer-facts" },
      el("dt", {}, "Account"),
      this.accountText,
      el("dt", {}, "Phones"),
      this.phonesText,
    );
    const balance = el(
      "div",
      { className: "customer-balance", attrs: { role: "group", "aria-labelledby": "customer-balance-label" } },
      el("p", { id: "customer-balance-label", className: "balance-label" }, "Balance"),
      this.balance,
    );
    this.notice = el("p", { className: "notice", attrs: { role: "status", "aria-live": "polite" } }, this.told);
    this.error = el("p", { className: "error", hidden: true, attrs: { role: "alert" } });
    const currency = (item) => item.currency || this.me.currency;
    const zone = this.me.timezone;
    this.purchases = this.table("purchases", "Purchases", "Vouchers bought from the balance, newest first", {
      columns: [
        ["Voucher", (p) => el("code", {}, p.voucher_code)],
        ["Plan", (p) => p.plan],
        ["Price", (p) => money(p.price, this.me.currency), "amount"],
        ["Valid until", (p) => dateTime(p.valid_until, zone)],
        ["Bought", (p) => dateTime(p.created_at, zone)],
        ["By", (p) => p.created_by],
      ],
      empty: "No vouchers bought yet.",
      load: (cursor) => readPage(this.path("/purchases"), {}, cursor, PAGE),
      rowData: (p) => ({ voucher: p.voucher_code }),
    });
    this.transactions = this.table("transactions", "Transactions", "Every change to the balance, newest first", {
      columns: [
        ["Date", (t) => dateTime(t.at, zone)],
        ["What", (t) => KINDS[t.kind] || t.kind],
        ["Amount", (t) => signed(t.amount, currency(t)), "amount"],
        ["Details", (t) => about(t)],
        ["By", (t) => t.created_by || ""],
      ],
      empty: "No transactions yet.",
      load: (cursor) => readPage(this.path("/transactions"), {}, cursor, PAGE),
      rowData: (t) => ({ kind: t.kind }),
    });
    this.payments = this.table("payments", "Payments", "Payments credited to this customer, newest first", {
      columns: [
        ["#", (p) => String(p.id)],
        ["Code", (p) => p.code],
        ["Phone", (p) => p.phone || ""],
        ["Amount", (p) => money(p.amount, currency(p)), "amount"],
        ["Date Paid", (p) => dateTime(p.paid_at, zone)],
      ],
      empty: "No payments credited to this customer.",
      load: (cursor) => readPage("/payments", { status: "associated", account: this.account }, cursor, PAGE),
      rowData: (p) => ({ paymentId: String(p.id) }),
    });
    this.section.replaceChildren(
      back,
      toolbar,
      el("div", { className: "customer-summary" }, facts, balance),
      this.notice,
      this.error,
      ...[this.purchases, this.transactions, this.payments].map((part) => part.element),
      ...dialogs,
    );
  }

  /** A titled part of the page holding a ``PagedTable``. */
  table(name, heading, caption, options) {
    const table = new PagedTable({
      id: `customer-${name}`,
      caption,
      fail: (error) => this.fail(`The ${heading.toLowerCase()} could not be loaded`, error),
      ...options,
    });
    this.tables.push(table);
    const title = el("h3", { id: `customer-${name}-title` }, heading);
    const element = el(
      "div",
      { className: "customer-part", attrs: { role: "region", "aria-labelledby": title.id } },
      title,
      table.element,
    );
    return { table, element };
  }

  show(customer) {
    this.customer = customer;
    this.title.textContent = customer.name;
    this.accountText.textContent = customer.account_number;
    this.phonesText.textContent = customer.phones.length ? customer.phones.join(", ") : "None";
    this.balance.textContent = money(customer.balance, customer.currency || this.me.currency);
  }

  /** The customer, their balance and every list read again after a change. */
  async refresh() {
    const generation = ++this.generation;
    const reading = Promise.all(this.tables.map((table) => table.load()));
    try {
      const customer = await call("GET", this.path());
      if (generation === this.generation && !this.closed) this.show(customer);
    } catch (error) {
      if (generation === this.generation && !this.closed) {
        this.fail("The customer could not be read again", error);
      }
    }
    await reading;
  }

  async edited(answer) {
    if (this.closed) return;
    const rematched = answer.rematched_payments || [];
    this.say(
      `Saved ${answer.account_number}: ${answer.name}, ` +
        `${answer.phones.length ? answer.phones.join(", ") : "no phones"}.` +
        (rematched.length
          ? ` ${rematched.length} earlier ${rematched.length === 1 ? "payment" : "payments"} from a new ` +
            `phone ${rematched.length === 1 ? "was" : "were"} credited; their balance is now ` +
            `${money(answer.balance, answer.currency || this.me.currency)}.`
          : ""),
    );
    this.show(answer);
    await this.refresh();
  }

  async bought(answer) {
    if (this.closed) return;
    this.say(
      `Voucher ${answer.voucher_code} (${answer.plan}, ${money(answer.price, this.me.currency)}) was bought, ` +
        `valid until ${dateTime(answer.valid_until, this.me.timezone)}; the balance is now ` +
        `${money(answer.balance, this.me.currency)}.`,
    );
    await this.refresh();
  }

  say(text) {
    this.notice.textContent = text;
    hideError(this.error);
  }

  fail(what, error) {
    showError(this.error, what, error, this.onRefused);
  }

  close() {
    this.closed = true;
    this.generation += 1;
    for (const table of this.tables) table.stop();
    if (this.editing) this.editing.close();
    if (this.buying) this.buying.close();
  }
}
