// The Payment requests page.

const $ = (id) => document.getElementById(id);

export class RequestsPage {
  constructor(me, onRefused) {
    this.me = me;
    this.onRefused = onRefused;
    this.section = $("requests");
  }

  /** Show the page; ``arg`` is what follows "#/requests/" in the address, if anything. */
  async open(arg) {
    const title = document.createElement("h2");
    title.id = "requests-title";
    title.tabIndex = -1;
    title.textContent = "Payment requests";
    this.section.replaceChildren(title);
    this.section.hidden = false;
  }

  close() {
    this.section.hidden = true;
    this.section.replaceChildren();
  }
}
