// What every console dialog that makes a change shares. Each opening is one
// Idempotency-Key, and Submit is disabled while the change is sent, so a double click, a
// retried Submit after a lost answer, or Enter held down makes one change; a refusal is
// shown in the dialog in the API's words, and the dialog stays open to be corrected.

import { newKey, request } from "./api.js";

/** A dialog's sending half. A subclass sets ``dialog``, ``form``, ``error`` and
 * ``submit`` (then calls ``listen``), and gives ``first()`` (what takes the focus),
 * ``path()``, ``body()`` (a JSON body, or a string saying what to correct),
 * ``refused(detail)`` (the token is no longer accepted) and ``done(answer, status)``
 * (runs once the change is made, even if the dialog was closed while it was sent). */
export class SendingDialog {
  /** Submit sends, ``cancel`` closes, and the focus goes back to what opened it. */
  listen(cancel) {
    this.sending = false;
    this.opening = 0;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    cancel.addEventListener("click", () => this.dialog.close());
    this.dialog.addEventListener("close", () => {
      if (this.opener && this.opener.isConnected) this.opener.focus();
    });
  }

  /** Open the dialog for a new change, with its own Idempotency-Key. */
  show(opener) {
    this.opener = opener;
    this.opening += 1;
    this.key = newKey();
    this.sending = false;
    this.busy(false);
    this.say("");
    this.dialog.showModal();
    this.first().focus();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  say(problem) {
    this.error.textContent = problem;
    this.error.hidden = !problem;
  }

  busy(sending) {
    this.submit.disabled = sending;
    if (sending) this.submit.setAttribute("aria-busy", "true");
    else this.submit.removeAttribute("aria-busy");
  }

  method() {
    return "POST";
  }

  /** A refusal other than a refused token, before it is shown; ``current`` says whether
   * this dialog still shows the change that was refused. */
  refusedChange(_refusal, _current) {}

  async send() {
    if (this.sending) return;
    const body = this.body();
    if (typeof body === "string") {
      this.say(body);
      return;
    }
    // a dialog closed while this was sent and opened again is another change: what comes
    // back for this one leaves that one's form alone
    const opening = this.opening;
    const current = () => opening === this.opening;
    this.sending = true;
    this.busy(true);
    this.say("");
    let sent;
    try {
      sent = await request(this.method(), this.path(), { body, key: this.key });
    } catch (refusal) {
      if (refusal.status === 401) {
        this.refused(refusal.message);
        return;
      }
      this.refusedChange(refusal, current());
      // the API's words as they are: they say what was wrong and what to do
      if (current()) this.say(refusal.message);
      return;
    } finally {
      if (current()) {
        this.sending = false;
        this.busy(false);
      }
    }
    if (current()) this.close();
    await this.done(sent.answer, sent.status);
  }
}
