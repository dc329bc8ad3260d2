// A searchable customer dropdown (an ARIA combobox): type an account, a name or a phone,
// pick with the arrows and Enter, or with the mouse. GET /customers?q= answers; a slower,
// older answer never replaces a newer one. Some customers may be pinned first (a shared
// phone's candidates).

import { call } from "./api.js";

const ASK_AFTER_MS = 200;
const SHOWN = 10;

let pickers = 0;

export class CustomerPicker {
  /** ``input`` and ``list`` are the combobox's text box and its (empty) listbox. */
  constructor(input, list, { onRefused, onPick } = {}) {
    this.input = input;
    this.list = list;
    this.onRefused = onRefused || (() => {});
    this.onPick = onPick || (() => {});
    this.prefix = `picker${++pickers}`;
    this.pinned = [];
    this.found = [];
    this.foundFor = null;
    this.options = [];
    this.active = -1;
    this.selected = null;
    this.asked = 0;
    this.timer = null;
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-controls", list.id);
    input.setAttribute("aria-expanded", "false");
    input.autocomplete = "off";
    input.spellcheck = false;
    list.setAttribute("role", "listbox");
    list.hidden = true;
    input.addEventListener("input", () => this.typed());
    input.addEventListener("keydown", (event) => this.key(event));
    // the list opens on typing, an arrow or a click; on focus only when it has customers
    // to offer first, so an Escape straight after opening still closes the dialog
    input.addEventListener("focus", () => {
      if (!this.selected && this.pinned.length) this.open();
    });
    input.addEventListener("click", () => this.open());
    input.addEventListener("blur", () => this.close());
    // a click on an option must not take the focus (and close the list) before it lands
    list.addEventListener("mousedown", (event) => event.preventDefault());
  }

  /** Empty the box; ``pinned`` account numbers are offered first, named once known. */
  async reset(pinned = []) {
    clearTimeout(this.timer);
    this.asked += 1;
    this.input.value = "";
    this.selected = null;
    this.active = -1;
    this.found = [];
    this.foundFor = null;
    this.pinned = pinned.map((account) => ({ account_number: account, name: "", phones: [] }));
    this.render();
    this.close();
    await Promise.all([this.name(this.pinned), this.ask("")]);
  }

  /** The account chosen: the one picked, or the text typed when nothing was. */
  value() {
    return this.selected ? this.selected.account_number : this.input.value.trim();
  }

  async name(pinned) {
    await Promise.all(
      pinned.map(async (customer) => {
        try {
          const found = await call("GET", `/customers/${encodeURIComponent(customer.account_number)}`);
          customer.name = found.name;
          customer.phones = found.phones;
        } catch (error) {
          if (error.status === 401) this.onRefused(error.message);
          // an unnamed candidate is still offered by its account number
        }
      }),
    );
    this.render();
  }

  typed() {
    this.selected = null;
    this.render();
    this.open();
    clearTimeout(this.timer);
    const text = this.input.value.trim();
    this.timer = setTimeout(() => this.ask(text), ASK_AFTER_MS);
  }

  async ask(text) {
    const asked = ++this.asked;
    const params = new URLSearchParams({ limit: String(SHOWN) });
    if (text) params.set("q", text);
    try {
      const page = await call("GET", `/customers?${params}`);
      if (asked !== this.asked) return;
      this.found = page.items;
      this.foundFor = text;
      this.render();
    } catch (error) {
      if (asked !== this.asked) return;
      if (error.status === 401) this.onRefused(error.message);
      this.found = [];
      this.render(`Customers could not be searched: ${error.message}`);
    }
  }

  /** Pinned customers that fit the text, then the answer's others, as options. */
  render(problem = "") {
    const typed = this.input.value.trim();
    const text = this.selected ? "" : typed.toLowerCase();
    const digits = /[a-z]/i.test(text) ? "" : text.replace(/\D/g, "").replace(/^0+/, "");
    const fits = (c) =>
      !text ||
      c.account_number.toLowerCase().includes(text) ||
      (c.name || "").toLowerCase().includes(text) ||
      (digits.length >= 4 && c.phones.some((phone) => phone.includes(digits)));
    const pinned = this.pinned.filter(fits);
    const seen = new Set(pinned.map((c) => c.account_number));
    // until the answer for this very text comes, the last one's customers must fit it here
    const current = this.selected || this.foundFor === typed;
    const rest = this.found.filter((c) => !seen.has(c.account_number) && (current || fits(c)));
    const wasActive = this.active >= 0 ? this.options[this.active][0].account_number : null;
    this.options = [...pinned.map((c) => [c, true]), ...rest.map((c) => [c, false])];
    // an answer that comes in leaves the arrow on the customer it was on
    const still = this.options.findIndex(([c]) => c.account_number === wasActive);
    this.active = still >= 0 ? still : this.options.length && text ? 0 : -1;
    const items = this.options.map(([customer, isPinned], index) => {
      const li = document.createElement("li");
      li.id = `${this.prefix}-option-${index}`;
      li.setAttribute("role", "option");
      li.dataset.account = customer.account_number;
      const account = document.createElement("strong");
      account.textContent = customer.account_number;
      li.append(account, customer.name ? ` ${customer.name}` : "");
      if (customer.phones && customer.phones.length) {
        const phones = document.createElement("span");
        phones.className = "hint";
        phones.textContent = ` ${customer.phones.join(", ")}`;
        li.append(phones);
      }
      if (isPinned) {
        li.classList.add("pinned");
        const tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = "shares this phone";
        li.append(" ", tag);
      }
      li.addEventListener("click", () => this.pick(index));
      return li;
    });
    if (!items.length) {
      const li = document.createElement("li");
      li.className = problem ? "error" : "hint";
      li.setAttribute("aria-disabled", "true");
      li.textContent = problem || (text ? "No customer matches." : "No customers yet.");
      items.push(li);
    }
    this.list.replaceChildren(...items);
    this.highlight();
  }

  highlight() {
    this.options.forEach((_, index) => {
      const li = document.getElementById(`${this.prefix}-option-${index}`);
      if (li) li.setAttribute("aria-selected", String(index === this.active));
    });
    if (this.active >= 0 && this.isOpen()) {
      const li = document.getElementById(`${this.prefix}-option-${this.active}`);
      this.input.setAttribute("aria-activedescendant", li.id);
      li.scrollIntoView?.({ block: "nearest" });
    } else {
      this.input.removeAttribute("aria-activedescendant");
    }
  }

  isOpen() {
    return !this.list.hidden;
  }

  open() {
    this.list.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    this.highlight();
  }

  close() {
    this.list.hidden = true;
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }

  pick(index) {
    const [customer] = this.options[index];
    this.selected = customer;
    this.input.value = customer.name ? `${customer.account_number} ${customer.name}` : customer.account_number;
    this.close();
    this.onPick(customer);
  }

  key(event) {
    const count = this.options.length;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      if (!this.isOpen()) {
        // the first arrow shows the list again, at the option it last had
        this.open();
        if (this.active < 0 && count) this.active = step > 0 ? 0 : count - 1;
      } else if (count) {
        this.active = this.active < 0 ? (step > 0 ? 0 : count - 1) : (this.active + step + count) % count;
      }
      this.highlight();
    } else if (event.key === "Enter" && this.isOpen() && this.active >= 0) {
      // Enter picks the option; it does not send the form yet
      event.preventDefault();
      this.pick(this.active);
    } else if (event.key === "Escape" && this.isOpen()) {
      // the first Escape closes the list, the next one the dialog
      event.preventDefault();
      event.stopPropagation();
      this.close();
    }
  }
}
