// The Transactions page.

const $ = (id) => document.getElementById(id);

export class TransactionsPage {
  constructor(me, onRefused) {
    this.me = me;
    this.onRefused = onRefused;
    this.section = $("transactions");
  }

  /** Show the page; ``arg`` is what follows "#/transactions/" in the address, if anything. */
  async open(arg) {
    const title = document.createElement("h2");
    title.id = "transactions-title";
    title.tabIndex = -1;
    title.textContent = "Transactions";
    this.section.replaceChildren(title);
    this.section.hidden = false;
  }

  close() {
    this.section.hidden = true;
    this.section.replaceChildren();
  }
}
