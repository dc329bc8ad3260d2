// The search box's two halves: rows already on the screen are filtered as each key is
// typed; the server (GET /payments?q=) is asked once the typing pauses, for older matches.

/** Whether ``payment`` shows for the typed ``q``: its account, code, payer's name, phone
 * (a run of at least four digits, in any spelling) or amount ("1500" or "1,500.00"). */
export function matches(payment, q) {
  const text = q.trim().toLowerCase();
  if (!text) return true;
  const words = [payment.account_number, payment.code, payment.payer_name, payment.reference];
  if (words.some((word) => word && word.toLowerCase().includes(text))) return true;
  if (!/[a-z]/i.test(text)) {
    const digits = text.replace(/\D/g, "").replace(/^0+/, "");
    if (digits.length >= 4 && payment.phone && payment.phone.includes(digits)) return true;
    const amount = text.replace(/,/g, "");
    if (/^\d+(\.\d*)?$/.test(amount) && sameAmountSoFar(payment.amount, amount)) return true;
  }
  return false;
}

// "1500" and "1500.0" are 1500.00 as typed so far; "150" is not (compared as text: no floats)
function sameAmountSoFar(stored, typed) {
  const [whole, fraction = ""] = stored.split(".");
  const [typedWhole, typedFraction] = typed.split(".");
  if (typedWhole.replace(/^0+(?=\d)/, "") !== whole) return false;
  if (typedFraction === undefined || fraction.startsWith(typedFraction)) return true;
  return /^0*$/.test(typedFraction) && /^0*$/.test(fraction);
}

/** Calls ``ask(text)`` once, ``ms`` after the last ``type(text)``: one request a pause. */
export class Pause {
  constructor(ms, ask) {
    this.ms = ms;
    this.ask = ask;
    this.timer = null;
  }

  type(text) {
    this.cancel();
    this.timer = setTimeout(() => {
      this.timer = null;
      this.ask(text);
    }, this.ms);
  }

  cancel() {
    clearTimeout(this.timer);
    this.timer = null;
  }
}
