// The Customers page.

const $ = (id) => document.getElementById(id);

export class CustomersPage {
  constructor(me, onRefused) {
    this.me = me;
    this.onRefused = onRefused;
    this.section = $("customers");
  }

  /** Show the page; ``arg`` is what follows "#/customers/" in the address, if anything. */
  async open(arg) {
    const title = document.createElement("h2");
    title.id = "customers-title";
    title.tabIndex = -1;
    title.textContent = "Customers";
    this.section.replaceChildren(title);
    this.section.hidden = false;
  }

  close() {
    this.section.hidden = true;
    this.section.replaceChildren();
  }
}
