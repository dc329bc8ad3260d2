// The Customers page: every customer by account number, a search box, and, for roles that
// may change things, New customer. "#/customers/<account>" shows one customer instead
// (customer-page.js).

import { NewCustomerDialog } from "./customer-dialogs.js";
import { customerHref, el } from "./customer-dom.js";
import { CustomerView } from "./customer-page.js";
import { hideError, showError } from "./error-line.js";
import { money } from "./format.js";
import { readPage, SearchedList } from "./paged.js";

const $ = (id) => document.getElementById(id);

/** Whether ``customer`` shows for ``q`` before the server answers: the account's start, a
 * piece of the name, or a run of at least four of a phone's digits (as the server reads it). */
function fits(customer, q) {
  const text = q.toLowerCase();
  const squeezed = text.replace(/[^a-z0-9]/g, "");
  const account = customer.account_number.toLowerCase().replace(/[^a-z0-9]/g, "");
  if (squeezed && account.startsWith(squeezed)) return true;
  if (customer.name.toLowerCase().includes(text)) return true;
  const digits = /[a-z]/i.test(text) ? "" : text.replace(/\D/g, "").replace(/^0+/, "");
  return digits.length >= 4 && customer.phones.some((phone) => phone.includes(digits));
}

// what a page says once it opens: a change made just before the address moved to it
let told = "";

export class CustomersPage {
  constructor(me, onRefused) {
    this.me = me;
    this.onRefused = onRefused;
    this.canChange = me.role === "operator" || me.role === "admin";
    this.section = $("customers");
    this.closed = false;
    this.view = null;
  }

  /** Show the page; ``arg`` is what follows "#/customers/" in the address, if anything. */
  async open(arg) {
    const notice = told;
    told = "";
    this.section.hidden = false;
    const options = { onRefused: this.onRefused, canChange: this.canChange, notice };
    this.view = arg
      ? new CustomerView(this.me, this.section, arg, options)
      : new CustomerList(this.me, this.section, options);
    await this.view.open();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    if (this.view) this.view.close();
    this.section.hidden = true;
    this.section.replaceChildren();
  }
}

class CustomerList {
  constructor(me, section, { onRefused, canChange, notice }) {
    this.me = me;
    this.section = section;
    this.onRefused = onRefused;
    this.canChange = canChange;
    this.closed = false;
    this.build(notice);
  }

  build(notice) {
    const title = el("h2", { id: "customers-title", tabIndex: -1 }, "Customers");
    const toolbar = el("div", { className: "toolbar" }, title);
    if (this.canChange) {
      this.making = new NewCustomerDialog({ onRefused: this.onRefused, done: (answer) => this.made(answer) });
      const make = el("button", { type: "button", className: "primary", id: "new-customer" }, "New customer");
      make.onclick = () => this.making.open(make);
      toolbar.append(make);
    }
    this.box = el("input", {
      id: "customers-search",
      type: "search",
      autocomplete: "off",
      spellcheck: false,
      placeholder: "Account, name or phone",
      attrs: { "aria-describedby": "customers-search-status" },
    });
    const status = el("span", {
      id: "customers-search-status",
      className: "hint",
      attrs: { "aria-live": "polite" },
    });
    const search = el(
      "div",
      { className: "search", attrs: { role: "search" } },
      el("label", { htmlFor: "customers-search" }, "Search"),
      this.box,
      status,
    );
    this.notice = el("p", { className: "notice", attrs: { role: "status", "aria-live": "polite" } }, notice);
    this.error = el("p", { className: "error", hidden: true, attrs: { role: "alert" } });
    const head = el(
      "tr",
      {},
      ...["Account", "Name", "Phones", "Balance"].map((name) =>
        el("th", { scope: "col", className: name === "Balance" ? "amount" : "" }, name),
      ),
    );
    const body = el("tbody");
    this.table = el(
      "table",
      { id: "customers-table" },
      el("caption", {}, "Customers by account number"),
      el("thead", {}, head),
      body,
    );
    const empty = el("p", { hidden: true }, "No customers yet.");
    const noMatch = el("p", { hidden: true });
    const loading = el("p", { className: "hint", hidden: true }, "Loading…");
    const more = el("button", { type: "button", hidden: true, id: "customers-more" }, "More");
    this.section.replaceChildren(
      toolbar,
      search,
      this.notice,
      this.error,
      el("div", { className: "table-wrap" }, this.table),
      empty,
      noMatch,
      loading,
      more,
      ...(this.making ? [this.making.dialog] : []),
    );
    this.list = new SearchedList({
      read: (q, cursor) => readPage("/customers", q ? { q } : {}, cursor),
      box: this.box,
      body,
      more,
      loading,
      empty,
      noMatch,
      status,
      row: (customer) => this.row(customer),
      // the server's matches for exactly this text once they come; until then the
      // loaded rows that fit it
      matching: (q, { items, found, answered }) => (answered ? found : items.filter((c) => fits(c, q))),
      said: (n, answered, more) =>
        answered
          ? `${n} ${n === 1 ? "customer matches" : "customers match"}` +
            `${more ? " so far; More shows the rest" : ""}.`
          : `${n} on the screen ${n === 1 ? "matches" : "match"}; searching all customers…`,
      unmatched: (q) => `No customer's account, name or phone matches "${q}".`,
      took: () => this.clearError(),
      failed: (error, searching) =>
        this.fail(searching ? "The customers could not be searched" : "The customers could not be loaded", error),
    });
  }

  async open() {
    await this.list.refresh();
  }

  close() {
    this.closed = true;
    this.list.stop();
    if (this.making) this.making.close();
  }

  row(customer) {
    const link = el("a", { href: customerHref(customer.account_number) }, customer.account_number);
    return el(
      "tr",
      { dataset: { account: customer.account_number } },
      el("td", { dataset: { label: "Account" } }, link),
      el("td", { dataset: { label: "Name" } }, customer.name),
      el("td", { dataset: { label: "Phones" } }, customer.phones.join(", ")),
      el(
        "td",
        { className: "amount", dataset: { label: "Balance" } },
        money(customer.balance, customer.currency || this.me.currency),
      ),
    );
  }

  made(answer) {
    // the operator went elsewhere meanwhile: the list there says nothing of it
    if (this.closed) return;
    const rematched = answer.rematched_payments || [];
    told =
      `Customer ${answer.account_number} (${answer.name}) was created.` +
      (rematched.length
        ? ` ${rematched.length} earlier ${rematched.length === 1 ? "payment" : "payments"} from their ` +
          `phones ${rematched.length === 1 ? "was" : "were"} credited to them.`
        : "");
    location.hash = customerHref(answer.account_number);
  }

  clearError() {
    hideError(this.error);
  }

  fail(what, error) {
    showError(this.error, what, error, this.onRefused);
  }
}
