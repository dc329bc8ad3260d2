// The Payment requests page: the requests momo has sent to customers' phones, newest
// first, a status at a time or all; for roles that may change things, "Ask to pay". While
// a request on the screen is pending the page asks momo about it every two seconds and
// says, where the screen reader hears it too, when it is paid, failed or cancelled.

import { call, newKey } from "./api.js";
import { hideError, showError } from "./error-line.js";
import { SendingDialog } from "./form-dialog.js";
import { dateTime, money } from "./format.js";
import { Pages, readPage } from "./paged.js";
import { CustomerPicker } from "./picker.js";

// how long after an answer the pending requests on the screen are asked about again
const WATCH_EVERY_MS = 2000;
// the newest notices stay on the screen; older ones make way
const NOTICES_KEPT = 4;
const STATUSES = ["pending", "paid", "failed", "cancelled", "expired"];
const PROVIDERS = { mpesa: "M-PESA", airtel: "Airtel Money", mtn: "MTN MoMo" };
// the request was made and the provider did not take it: it is kept as failed, and a new
// Submit is a new request (the key of the refused one would only replay the refusal)
// a request paid with another amount than asked: the payment is not credited, it waits
// unassociated for an operator
const AMOUNT_DIFFERS = "amount_differs";
const MADE_AND_REFUSED = new Set(["provider_refused", "provider_unavailable", "provider_error"]);

const COLUMNS = [
  ["#", (r) => String(r.id)],
  ["Customer", (r) => r.account_number || ""],
  ["Phone", (r) => r.phone || ""],
  ["Amount", (r, me) => money(r.amount, r.currency || me.currency), "amount"],
  ["Provider", (r) => PROVIDERS[r.provider] || r.provider],
  ["Status", null, "status"],
  ["Asked at", (r, me) => dateTime(r.created_at, me.timezone), "when"],
  ["Result", (r) => result(r)],
];

/** What came of a request, in words: its payment, or the provider's description. */
function result(r) {
  if (r.status === "paid") {
    const payment = r.payment_id ? `Payment #${r.payment_id}` : "";
    // another amount than asked: the description says where the money waits
    return r.result_code === AMOUNT_DIFFERS ? [payment, r.result_description].filter(Boolean).join(": ") : payment;
  }
  if (r.status === "pending") return "Waiting for the customer…";
  return r.result_description || (r.result_code ? `Result code ${r.result_code}` : "");
}

function capital(word) {
  return word.charAt(0).toUpperCase() + word.slice(1);
}

/** ``<tag>`` with ``props`` set on it (``dataset`` and ``aria-*`` as attributes) and
 * ``children`` appended. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name.startsWith("aria-") || name === "role" || name === "for") node.setAttribute(name, value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node[name] = value;
  }
  node.append(...children);
  return node;
}

export class RequestsPage {
  constructor(me, onRefused) {
    this.me = me;
    this.onRefused = onRefused;
    this.canAsk = me.role === "operator" || me.role === "admin";
    this.section = document.getElementById("requests");
    this.status = "";
    this.pages = null;
    this.closed = false;
    this.timer = null;
    this.checking = false;
  }

  /** Show the page; ``arg`` is what follows "#/requests/" in the address, if anything. */
  async open() {
    this.build();
    this.section.hidden = false;
    await this.pages.load(true);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.pages) this.pages.stop();
    if (this.asking && this.asking.dialog.open) this.asking.dialog.close();
    this.section.hidden = true;
    this.section.replaceChildren();
  }

  build() {
    this.title = el("h2", { id: "requests-title", tabIndex: -1, textContent: "Payment requests" });
    const toolbar = el("div", { className: "toolbar" }, this.title);
    if (this.canAsk) {
      this.ask = el("button", {
        id: "ask-to-pay",
        type: "button",
        className: "primary",
        textContent: "Ask to pay",
      });
      toolbar.append(this.ask);
    }
    this.filter = el(
      "select",
      { id: "requests-status" },
      el("option", { value: "", textContent: "All" }),
      ...STATUSES.map((s) => el("option", { value: s, textContent: capital(s) })),
    );
    this.filter.addEventListener("change", () => this.show(this.filter.value));
    const filter = el(
      "div",
      { className: "requests-filter" },
      el("label", { for: "requests-status", textContent: "Status" }),
      this.filter,
    );
    this.notices = el("div", {
      id: "requests-notice",
      className: "notice requests-notices",
      role: "status",
      "aria-live": "polite",
    });
    this.error = el("p", { id: "requests-error", className: "error", role: "alert", hidden: true });
    this.caption = el("caption");
    this.table = el("table", { id: "requests-table" }, this.caption, el("thead"), el("tbody"));
    const head = el("tr");
    for (const [name, , kind] of COLUMNS) {
      head.append(el("th", { scope: "col", className: kind || "", textContent: name }));
    }
    this.table.tHead.append(head);
    this.empty = el("p", { id: "requests-empty", hidden: true });
    this.loading = el("p", { id: "requests-loading", hidden: true, textContent: "Loading…" });
    this.more = el("button", { id: "requests-more", type: "button", hidden: true, textContent: "More" });
    this.section.replaceChildren(
      toolbar,
      filter,
      this.notices,
      this.error,
      el("div", { className: "table-wrap" }, this.table),
      this.empty,
      this.loading,
      this.more,
    );
    if (this.canAsk) {
      this.asking = new AskDialog(this);
      this.section.append(this.asking.dialog);
      this.ask.addEventListener("click", () => this.asking.open(this.ask));
    }
    this.pages = new Pages({
      read: (cursor) => readPage("/payment-requests", this.params(), cursor),
      more: this.more,
      loading: this.loading,
      took: () => {
        this.render();
        this.clearError();
        this.watch();
      },
      failed: (error) => this.fail("The payment requests could not be loaded", error),
    });
  }

  /** The list's query: one status, or all of them. */
  params() {
    return this.status ? { status: this.status } : {};
  }

  /** Another status (or all of them): its newest requests, from the first page. */
  async show(status) {
    this.status = status;
    await this.pages.load(true);
  }

  /** The newest requests of this list merged in above the ones shown: after a request
   * was made, even one the provider refused (it is kept, as failed). */
  async newer() {
    const generation = this.pages.generation;
    try {
      const page = await readPage("/payment-requests", this.params());
      if (generation !== this.pages.generation || this.closed) return;
      for (const item of [...page.items].reverse()) this.put(item);
      this.watch();
    } catch (error) {
      this.fail("The newest payment requests could not be loaded", error);
    }
  }

  /** ``item`` on the screen: its row updated in place, or a new row at the top when it
   * is newer than any shown and belongs to this list. */
  put(item) {
    const at = this.pages.items.findIndex((r) => r.id === item.id);
    if (at >= 0) {
      this.update(item);
      return;
    }
    const fits = !this.status || item.status === this.status;
    const newest = this.pages.items.length ? this.pages.items[0].id : 0;
    if (!fits || item.id < newest) return;
    this.pages.items.unshift(item);
    this.tbody().prepend(this.row(item));
    this.showEmpty();
  }

  tbody() {
    return this.table.tBodies[0];
  }

  render() {
    this.caption.textContent = this.status
      ? `${capital(this.status)} payment requests, newest first`
      : "Payment requests, newest first";
    this.tbody().replaceChildren(...this.pages.items.map((r) => this.row(r)));
    this.more.hidden = !this.pages.cursor;
    this.showEmpty();
  }

  showEmpty() {
    this.empty.textContent = this.status
      ? `No ${this.status} payment requests.`
      : this.canAsk
        ? "No payment requests yet: Ask to pay sends the first one to a customer's phone."
        : "No payment requests yet.";
    this.empty.hidden = this.pages.items.length > 0;
  }

  row(r) {
    const tr = el("tr", { dataset: { requestId: String(r.id), status: r.status } });
    for (const [name, value, kind] of COLUMNS) {
      const td = el("td", { className: kind || "", dataset: { label: name } });
      if (kind === "status") {
        td.append(el("span", { className: `state state-${r.status}`, textContent: capital(r.status) }));
      } else {
        td.textContent = value(r, this.me);
      }
      if (name === "Result" && r.status !== "paid" && r.status !== "pending") td.className = "result";
      tr.append(td);
    }
    return tr;
  }

  // --- watching the pending ones ----------------------------------------------------

  pending() {
    return this.pages.items.filter((r) => r.status === "pending").map((r) => r.id);
  }

  /** Ask about the pending requests shown in a moment, unless none is pending (or the
   * asking is under way: it asks again itself). */
  watch() {
    if (this.closed || this.checking) return;
    clearTimeout(this.timer);
    this.timer = this.pending().length ? setTimeout(() => this.check(), WATCH_EVERY_MS) : null;
  }

  async check() {
    this.timer = null;
    const ids = this.pending();
    if (this.closed || !ids.length) return;
    this.checking = true;
    let problem = null;
    try {
      const answers = await Promise.all(
        ids.map((id) => call("GET", `/payment-requests/${id}`).catch((error) => ({ error }))),
      );
      if (this.closed) return;
      for (const answer of answers) {
        if (!answer.error) this.update(answer);
        else if (answer.error.status === 401) {
          this.onRefused(answer.error.message);
          return;
        } else if (answer.error.status !== 404) problem = answer.error;
      }
    } finally {
      this.checking = false;
    }
    if (problem) {
      this.fail("Could not ask momo how the pending requests stand (trying again)", problem);
    } else if (this.error.dataset.watching) {
      this.clearError();
    }
    this.watch();
  }

  /** A request as momo now has it: its row redrawn; a request that stops pending is
   * announced. */
  update(item) {
    const at = this.pages.items.findIndex((r) => r.id === item.id);
    if (at < 0) return;
    const before = this.pages.items[at];
    this.pages.items[at] = item;
    const old = this.tbody().querySelector(`tr[data-request-id="${item.id}"]`);
    if (old) old.replaceWith(this.row(item));
    if (before.status === "pending" && item.status !== "pending") this.announce(item);
  }

  async announce(r) {
    const asked = money(r.amount, r.currency || this.me.currency);
    const why = r.result_description || (r.result_code ? `result code ${r.result_code}` : "");
    let text;
    let good = false;
    if (r.status === "paid") {
      const differs = r.result_code === AMOUNT_DIFFERS;
      good = !differs;
      text = differs
        ? `Request #${r.id} was paid, but not the ${asked} asked: ${why}`
        : `Request #${r.id} was paid: ${asked} credited to ${r.account_number}.`;
      if (r.payment_id) {
        try {
          const payment = await call("GET", `/payments/${r.payment_id}`);
          const paid = money(payment.amount, payment.currency || r.currency || this.me.currency);
          good = Boolean(payment.account_number);
          text = good
            ? `Request #${r.id} was paid: ${paid} credited to ${payment.account_number} (receipt ${payment.code}).`
            : `Request #${r.id} was paid with ${paid}, not the ${asked} asked: payment #${payment.id} ` +
              `(${payment.code}) waits among the unassociated payments for an operator to associate it.`;
        } catch (error) {
          if (error.status === 401) this.onRefused(error.message);
          // the request's own words are still true
        }
      }
    } else if (r.status === "failed") {
      text = `Request #${r.id} (${asked} from ${r.account_number}) failed${why ? `: ${why}` : "."}`;
    } else if (r.status === "cancelled") {
      text = `Request #${r.id} (${asked} from ${r.account_number}) was cancelled${why ? `: ${why}` : "."}`;
    } else {
      text =
        `Request #${r.id} (${asked} from ${r.account_number}) expired: no answer came from ` +
        "the customer's phone in time.";
    }
    if (!/[.!?…]$/.test(text)) text += ".";
    this.notice(text, good ? "good" : "bad");
  }

  notice(text, kind = "good") {
    if (this.closed) return;
    this.notices.prepend(el("p", { className: `said said-${kind}`, textContent: text }));
    while (this.notices.children.length > NOTICES_KEPT) this.notices.lastElementChild.remove();
  }

  // --- asking ----------------------------------------------------------------------

  /** A request was made: on the screen at once, then watched. */
  asked(item) {
    const phone = item.phone ? ` on ${item.phone}` : "";
    const through = PROVIDERS[item.provider] || item.provider;
    this.notice(
      item.status === "pending"
        ? `Request #${item.id} sent: ${item.account_number} is asked to pay ` +
            `${money(item.amount, item.currency || this.me.currency)}${phone} (${through}). ` +
            "This page says when they pay."
        : `Request #${item.id} for ${item.account_number} is ${item.status}.`,
    );
    this.clearError();
    this.put(item);
    this.watch();
  }

  clearError() {
    hideError(this.error);
    delete this.error.dataset.watching;
  }

  fail(what, error) {
    // a failure to watch the pending requests goes once the watching works again
    if (showError(this.error, what, error, this.onRefused) && what.startsWith("Could not ask momo how")) {
      this.error.dataset.watching = "1";
    }
  }
}

/** Ask a customer to pay: customer, phone (their first one unless another is typed) and
 * amount. Each opening is one Idempotency-Key and Submit is disabled while it is sent, so
 * a double click, or Submit again after a lost answer, prompts the customer once. */
class AskDialog extends SendingDialog {
  constructor(page) {
    super();
    this.page = page;
    this.phoneHint = el("p", { id: "ask-phone-hint", className: "hint" });
    this.customer = el("input", {
      id: "ask-customer",
      name: "customer",
      type: "text",
      placeholder: "Account, name or phone",
      "aria-describedby": "ask-customer-hint",
    });
    const options = el("ul", { id: "ask-options" });
    this.phone = el("input", {
      id: "ask-phone",
      name: "phone",
      type: "text",
      inputMode: "tel",
      autocomplete: "off",
      spellcheck: false,
      placeholder: "0712345678",
      "aria-describedby": "ask-phone-hint",
    });
    this.amount = el("input", {
      id: "ask-amount",
      name: "amount",
      type: "text",
      inputMode: "decimal",
      autocomplete: "off",
      placeholder: "1500",
      "aria-describedby": "ask-amount-hint",
    });
    this.error = el("p", { id: "ask-error", className: "error", role: "alert", hidden: true });
    this.submit = el("button", { type: "submit", id: "ask-submit", textContent: "Submit" });
    const cancel = el("button", { type: "button", id: "ask-cancel", textContent: "Cancel" });
    this.form = el(
      "form",
      { id: "ask-form", noValidate: true },
      el("h2", { id: "ask-title", textContent: "Ask to pay" }),
      el("p", {
        className: "hint",
        textContent:
          "The customer's phone asks them to confirm the payment with their PIN; their " +
          "balance is credited when they do.",
      }),
      el("label", { for: "ask-customer", textContent: "Customer" }),
      el("div", { className: "picker" }, this.customer, options),
      el("p", {
        id: "ask-customer-hint",
        className: "hint",
        textContent: "Type to search; pick with the arrow keys and Enter.",
      }),
      el("label", { for: "ask-phone" }, "Phone ", el("span", { className: "hint", textContent: "(optional)" })),
      this.phone,
      this.phoneHint,
      el("label", { for: "ask-amount", textContent: "Amount" }),
      this.amount,
      el("p", {
        id: "ask-amount-hint",
        className: "hint",
        textContent: `In ${page.me.currency}; M-PESA takes whole amounts, e.g. 1500.`,
      }),
      this.error,
      el("div", { className: "actions" }, cancel, this.submit),
    );
    this.dialog = el("dialog", { id: "ask", "aria-labelledby": "ask-title" }, this.form);
    this.picker = new CustomerPicker(this.customer, options, {
      onRefused: (detail) => this.refused(detail),
      onPick: (customer) => this.hint(customer),
    });
    // typing over a picked customer un-picks it: the hint no longer names their phone
    this.customer.addEventListener("input", () => this.hint(null));
    this.listen(cancel);
  }

  /** Open for a new request, with its own Idempotency-Key. */
  open(opener) {
    this.picker.reset();
    this.phone.value = "";
    this.amount.value = "";
    this.hint(null);
    this.show(opener);
  }

  first() {
    return this.customer;
  }

  /** Which phone an empty Phone asks on: the customer's first, named once one is picked. */
  hint(customer) {
    if (!customer) {
      this.phoneHint.textContent = "Leave it empty to ask on the customer's first phone.";
    } else if (customer.phones && customer.phones.length) {
      this.phoneHint.textContent =
        `Leave it empty to ask on ${customer.account_number}'s first phone, ${customer.phones[0]}.`;
    } else {
      this.phoneHint.textContent =
        `${customer.account_number} has no phone on record: type the one to ask.`;
    }
  }

  refused(detail) {
    if (this.dialog.open) this.dialog.close();
    this.page.onRefused(detail);
  }

  body() {
    const account = this.picker.value();
    if (!account) return "Choose the customer to ask: type an account, a name or a phone and pick one.";
    const amount = this.amount.value.trim();
    if (!amount) return "Type the amount to ask for, e.g. 1500.";
    const body = { account_number: account, amount };
    const phone = this.phone.value.trim();
    if (phone) body.phone = phone;
    return body;
  }

  path() {
    return "/payment-requests";
  }

  refusedChange(refusal, current) {
    if (MADE_AND_REFUSED.has(refusal.code)) {
      // the refused request is kept (failed): it shows in the list, and Submit again
      // after a correction is a new request
      if (current) this.key = newKey();
      this.page.newer();
    }
  }

  done(answer) {
    this.page.asked(answer);
  }
}
