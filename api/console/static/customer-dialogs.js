// The Customers pages' changes: New customer, Edit (name and phones) and Buy a plan, each
// a dialog built here. Each opening is one Idempotency-Key, and Submit is disabled while
// it is being sent, so a double click or Enter held down makes one change; a refusal is
// shown in the dialog in the API's words, and the dialog stays open to be corrected.

import { call } from "./api.js";
import { duration, el, phonesTyped } from "./customer-dom.js";
import { SendingDialog } from "./form-dialog.js";
import { money } from "./format.js";

let dialogs = 0;

class FormDialog extends SendingDialog {
  /** ``fields`` go between the title and the error line; ``done(answer, status)`` runs
   * once the change is made, even if the dialog was closed while it was being sent. */
  constructor({ title, submit, onRefused }) {
    super();
    this.prefix = `customer-dialog${++dialogs}`;
    this.onRefused = onRefused;
    this.title = el("h2", { id: `${this.prefix}-title` }, title);
    this.error = el("p", { className: "error", hidden: true, attrs: { role: "alert" } });
    this.submit = el("button", { type: "submit" }, submit);
    this.cancel = el("button", { type: "button" }, "Cancel");
    this.form = el(
      "form",
      { noValidate: true },
      this.title,
      ...this.fields(),
      this.error,
      el("div", { className: "actions" }, this.cancel, this.submit),
    );
    this.dialog = el(
      "dialog",
      { className: "customer-dialog", attrs: { "aria-labelledby": this.title.id } },
      this.form,
    );
    this.listen(this.cancel);
  }

  /** A labelled input (or textarea) with an optional hint, as [label, input, hint]. */
  field(name, label, { multiline = false, hint = "", ...props } = {}) {
    const id = `${this.prefix}-${name}`;
    const input = el(multiline ? "textarea" : "input", { id, name, ...props });
    if (!multiline) input.type = "text";
    const parts = [el("label", { htmlFor: id }, label), input];
    if (hint) {
      input.setAttribute("aria-describedby", `${id}-hint`);
      parts.push(el("p", { id: `${id}-hint`, className: "hint" }, hint));
    }
    return [input, parts];
  }

  /** The token is no longer accepted: close, and let the page ask for another. */
  refused(detail) {
    this.close();
    this.onRefused(detail);
  }
}

const PHONES_HINT = "One per line, or separated by commas, e.g. 0712345678 or +254712345678.";

export class NewCustomerDialog extends FormDialog {
  constructor({ onRefused, done }) {
    super({ title: "New customer", submit: "Create", onRefused });
    this.done = done;
  }

  fields() {
    let parts;
    [this.account, parts] = this.field("account", "Account number", {
      spellcheck: false,
      autocomplete: "off",
      placeholder: "ACC1043",
    });
    const all = [...parts];
    [this.name, parts] = this.field("name", "Name", { autocomplete: "off", placeholder: "Wanjiru Njeri" });
    all.push(...parts);
    [this.phones, parts] = this.field("phones", "Phones (optional)", {
      multiline: true,
      rows: 3,
      spellcheck: false,
      hint: PHONES_HINT,
    });
    all.push(...parts);
    return all;
  }

  open(opener) {
    this.account.value = "";
    this.name.value = "";
    this.phones.value = "";
    this.show(opener);
  }

  first() {
    return this.account;
  }

  path() {
    return "/customers";
  }

  body() {
    const account = this.account.value.trim();
    if (!account) return "Type the customer's account number, e.g. ACC1043.";
    const name = this.name.value.trim();
    if (!name) return "Type the customer's name: every customer has one, so they can be told apart.";
    return { account_number: account, name, phones: phonesTyped(this.phones.value) };
  }
}

export class EditCustomerDialog extends FormDialog {
  constructor({ onRefused, done }) {
    super({ title: "Edit customer", submit: "Save", onRefused });
    this.done = done;
  }

  fields() {
    let parts;
    [this.name, parts] = this.field("name", "Name", { autocomplete: "off" });
    const all = [...parts];
    [this.phones, parts] = this.field("phones", "Phones", {
      multiline: true,
      rows: 3,
      spellcheck: false,
      hint: `${PHONES_HINT} Payments from a phone added here that matched no one are credited to this customer.`,
    });
    all.push(...parts);
    return all;
  }

  open(customer, opener) {
    this.customer = customer;
    this.title.textContent = `Edit ${customer.account_number}`;
    this.name.value = customer.name;
    this.phones.value = customer.phones.join("\n");
    this.show(opener);
  }

  first() {
    return this.name;
  }

  method() {
    return "PATCH";
  }

  path() {
    return `/customers/${encodeURIComponent(this.customer.account_number)}`;
  }

  body() {
    const name = this.name.value.trim();
    if (!name) return "Type the customer's name: every customer has one, so they can be told apart.";
    return { name, phones: phonesTyped(this.phones.value) };
  }
}

export class BuyPlanDialog extends FormDialog {
  constructor({ onRefused, done }) {
    super({ title: "Buy a plan", submit: "Buy", onRefused });
    this.done = done;
    this.plans = [];
    this.asked = 0;
  }

  fields() {
    this.intro = el("p", { className: "hint" });
    this.legend = el("legend", {}, "Plan");
    this.choices = el("div", { className: "plans" });
    this.status = el("p", { className: "hint", attrs: { "aria-live": "polite" } });
    return [this.intro, el("fieldset", { className: "plan-choice" }, this.legend, this.choices, this.status)];
  }

  /** Offer the plans on sale to ``customer``, paid from their balance. */
  open(customer, opener) {
    this.customer = customer;
    this.title.textContent = `Buy a plan for ${customer.account_number}`;
    this.intro.textContent =
      `Paid from ${customer.name}'s balance of ${money(customer.balance, customer.currency)}; ` +
      "the voucher is listed on their page.";
    this.choices.replaceChildren();
    this.status.textContent = "Loading the plans on sale…";
    this.show(opener);
    // nothing to send until the plans are known
    this.submit.disabled = true;
    this.offer();
  }

  first() {
    // until the plans come, Cancel: Buy is disabled, and a disabled button loses the focus
    return this.choices.querySelector("input:checked") || this.cancel;
  }

  async offer() {
    const asked = ++this.asked;
    const opening = this.opening;
    let plans;
    try {
      plans = (await call("GET", "/plans?active=true")).items;
    } catch (error) {
      if (asked !== this.asked) return;
      if (error.status === 401) {
        this.close();
        this.onRefused(error.message);
        return;
      }
      this.status.textContent = "";
      this.say(`The plans could not be loaded: ${error.message} Close this and try again.`);
      return;
    }
    if (asked !== this.asked || opening !== this.opening) return;
    this.plans = plans;
    const name = `${this.prefix}-plan`;
    this.choices.replaceChildren(
      ...plans.map((plan, index) => {
        const id = `${name}-${index}`;
        const radio = el("input", { type: "radio", name, id, value: plan.code, checked: index === 0 });
        const valid = duration(plan.validity_minutes);
        const details = el("span", { className: "hint" }, `${plan.code}, valid ${valid}`);
        const label = el(
          "label",
          { htmlFor: id },
          el("span", { className: "plan-name" }, plan.name),
          " ",
          el("span", { className: "plan-price" }, money(plan.price, plan.currency)),
        );
        radio.setAttribute("aria-describedby", `${id}-details`);
        details.id = `${id}-details`;
        return el("div", { className: "plan" }, radio, el("div", {}, label, details));
      }),
    );
    this.status.textContent = plans.length
      ? ""
      : "No plan is on sale: an admin adds plans (POST /api/v1/plans) or puts one back on sale.";
    this.submit.disabled = !plans.length;
    const chosen = this.choices.querySelector("input:checked");
    // the first plan takes the focus, unless it has been moved on meanwhile
    if (chosen && this.dialog.open && document.activeElement === this.cancel) chosen.focus();
  }

  path() {
    return `/customers/${encodeURIComponent(this.customer.account_number)}/purchases`;
  }

  body() {
    const chosen = this.choices.querySelector("input:checked");
    if (!chosen) return "Choose the plan to buy.";
    return { plan: chosen.value };
  }
}
