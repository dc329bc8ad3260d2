// The Payments page's changes that take a form: Associate and Make Payment. Each opening
// of a dialog is one Idempotency-Key, and Submit is disabled while it is being sent, so a
// double click, a retried Submit after a lost answer, or Enter held down records one change.

import { SendingDialog } from "./form-dialog.js";
import { dateTime, money, reason } from "./format.js";
import { CustomerPicker } from "./picker.js";

const $ = (id) => document.getElementById(id);

// One of each for the document's life, whoever signs in: listeners are added once.
const made = new Map();

/** The page's dialog of ``kind``, answering to this sign-in's ``me`` and callbacks. */
export function dialog(kind, me, { onRefused, done }) {
  if (!made.has(kind)) made.set(kind, new kind());
  return Object.assign(made.get(kind), { me, onRefused, done });
}

class FormDialog extends SendingDialog {
  /** ``name`` prefixes the dialog's element ids (index.html holds the dialog). */
  constructor(dialogId, name) {
    super();
    this.dialog = $(dialogId);
    this.form = $(`${name}-form`);
    this.error = $(`${name}-error`);
    this.submit = this.form.querySelector('button[type="submit"]');
    this.listen($(`${name}-cancel`));
  }

  /** The token is no longer accepted: close, and let the page ask for another. */
  refused(detail) {
    this.close();
    this.onRefused(detail);
  }
}

export class AssociateDialog extends FormDialog {
  constructor() {
    super("associate", "associate");
    this.picker = new CustomerPicker($("associate-customer"), $("associate-options"), {
      onRefused: (detail) => this.refused(detail),
    });
  }

  /** Ask which customer ``payment`` belongs to; a shared phone's candidates come first. */
  open(payment, opener) {
    this.payment = payment;
    $("associate-title").textContent = `Associate payment #${payment.id}`;
    const payer = payment.payer_name || payment.phone || "an unknown payer";
    $("associate-text").textContent =
      `${payment.code}: ${money(payment.amount, payment.currency || this.me.currency)} from ${payer}, ` +
      `paid ${dateTime(payment.paid_at, this.me.timezone)}. ${reason(payment.reason, payment.candidates)}.`;
    const pinned = payment.reason === "shared_phone" ? payment.candidates || [] : [];
    this.picker.reset(pinned);
    this.show(opener);
  }

  first() {
    return this.picker.input;
  }

  path() {
    return `/payments/${this.payment.id}/associate`;
  }

  body() {
    const account = this.picker.value();
    if (!account) return "Choose the customer this payment belongs to: type an account, a name or a phone and pick one.";
    return { account_number: account };
  }
}

export class MakePaymentDialog extends FormDialog {
  constructor() {
    super("make", "make");
    this.picker = new CustomerPicker($("make-customer"), $("make-options"), {
      onRefused: (detail) => this.refused(detail),
    });
  }

  open(opener) {
    this.picker.reset();
    $("make-amount").value = "";
    $("make-reference").value = "";
    this.show(opener);
  }

  first() {
    return this.picker.input;
  }

  path() {
    return "/payments";
  }

  body() {
    const account = this.picker.value();
    if (!account) return "Choose the customer who paid: type an account, a name or a phone and pick one.";
    const amount = $("make-amount").value.trim();
    if (!amount) return "Type the amount paid, e.g. 1500.00.";
    const reference = $("make-reference").value.trim();
    const body = { account_number: account, amount };
    if (reference) body.reference = reference;
    return body;
  }
}
