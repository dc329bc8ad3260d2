// The Customers page: every customer by account number, a search box, and, for roles that
// may change things, New customer. "#/customers/<account>" shows one customer instead
// (customer-page.js).

import { call } from "./api.js";
import { NewCustomerDialog } from "./customer-dialogs.js";
import { customerHref, el } from "./customer-dom.js";
import { CustomerView } from "./customer-page.js";
import { money } from "./format.js";
import { moreOnScroll } from "./more.js";
import { Pause } from "./search.js";

const PAGE = 50;
// the server is asked once typing has paused this long, as on the Payments page
const SEARCH_PAUSE_MS = 300;

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
    // the list as paged in (without search), and its next page
    this.items = [];
    this.cursor = null;
    this.generation = 0;
    // the server's matches for the text ``foundFor``, and their next page
    this.q = "";
    this.found = [];
    this.foundFor = null;
    this.foundCursor = null;
    // each search carries a number: a slower answer to older text is dropped
    this.asked = 0;
    this.pause = new Pause(SEARCH_PAUSE_MS, (q) => this.search(q));
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
    this.box.oninput = () => this.typed();
    this.status = el("span", {
      id: "customers-search-status",
      className: "hint",
      attrs: { "aria-live": "polite" },
    });
    const search = el(
      "div",
      { className: "search", attrs: { role: "search" } },
      el("label", { htmlFor: "customers-search" }, "Search"),
      this.box,
      this.status,
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
    this.body = el("tbody");
    this.table = el(
      "table",
      { id: "customers-table" },
      el("caption", {}, "Customers by account number"),
      el("thead", {}, head),
      this.body,
    );
    this.empty = el("p", { hidden: true }, "No customers yet.");
    this.noMatch = el("p", { hidden: true });
    this.loading = el("p", { className: "hint", hidden: true }, "Loading…");
    this.more = el("button", { type: "button", hidden: true, id: "customers-more" }, "More");
    this.more.onclick = () => (this.q ? this.search(this.q, this.foundCursor) : this.load(false));
    this.section.replaceChildren(
      toolbar,
      search,
      this.notice,
      this.error,
      el("div", { className: "table-wrap" }, this.table),
      this.empty,
      this.noMatch,
      this.loading,
      this.more,
      ...(this.making ? [this.making.dialog] : []),
    );
    this.unwatch = moreOnScroll(this.more);
  }

  async open() {
    await this.load(true);
  }

  close() {
    this.closed = true;
    this.generation += 1;
    this.asked += 1;
    this.pause.cancel();
    this.unwatch();
    if (this.making) this.making.close();
  }

  async load(fresh) {
    const generation = ++this.generation;
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (!fresh && this.cursor) params.set("cursor", this.cursor);
    this.loading.hidden = false;
    this.more.disabled = true;
    try {
      const page = await call("GET", `/customers?${params}`);
      if (generation !== this.generation) return;
      this.items = fresh ? page.items : [...this.items, ...page.items];
      this.cursor = page.next_cursor;
      this.render();
      this.clearError();
    } catch (error) {
      if (generation === this.generation) this.fail("The customers could not be loaded", error);
    } finally {
      if (generation === this.generation) {
        this.loading.hidden = true;
        this.more.disabled = false;
      }
    }
  }

  /** A key in the search box: the rows on the screen are filtered now; the server is
   * asked once the typing pauses. */
  typed() {
    const q = this.box.value.trim();
    if (q === this.q) return;
    this.q = q;
    // whatever is on its way for the text before this key is no longer wanted
    this.asked += 1;
    this.render();
    if (q) this.pause.type(q);
    else this.pause.cancel();
  }

  async search(q, cursor = null) {
    const asked = ++this.asked;
    const params = new URLSearchParams({ q, limit: String(PAGE) });
    if (cursor) {
      params.set("cursor", cursor);
      this.more.disabled = true;
    }
    try {
      const page = await call("GET", `/customers?${params}`);
      if (asked !== this.asked) return;
      this.found = cursor && this.foundFor === q ? [...this.found, ...page.items] : page.items;
      this.foundFor = q;
      this.foundCursor = page.next_cursor;
      this.render();
      this.clearError();
    } catch (error) {
      if (asked === this.asked) this.fail("The customers could not be searched", error);
    } finally {
      if (cursor) this.more.disabled = false;
    }
  }

  /** The rows to show: the list; while searching, the server's matches for exactly this
   * text once they come, and until then the loaded rows that fit it. */
  render() {
    const q = this.q;
    const answered = Boolean(q) && this.foundFor === q;
    const shown = !q ? this.items : answered ? this.found : this.items.filter((c) => fits(c, q));
    this.body.replaceChildren(...shown.map((customer) => this.row(customer)));
    this.empty.hidden = Boolean(q) || shown.length > 0;
    this.noMatch.hidden = !answered || shown.length > 0;
    this.noMatch.textContent = `No customer's account, name or phone matches "${q}".`;
    this.more.hidden = q ? !(answered && this.foundCursor) : !this.cursor;
    const n = shown.length;
    this.status.textContent = !q
      ? ""
      : answered
        ? `${n} ${n === 1 ? "customer matches" : "customers match"}` +
          `${this.foundCursor ? " so far; More shows the rest" : ""}.`
        : `${n} on the screen ${n === 1 ? "matches" : "match"}; searching all customers…`;
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
    this.error.hidden = true;
    this.error.textContent = "";
  }

  fail(what, error) {
    if (error.status === 401) {
      this.onRefused(error.message);
      return;
    }
    this.error.textContent = `${what}: ${error.message}`;
    this.error.hidden = false;
  }
}
