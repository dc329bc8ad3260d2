// The Dashboard page.

const $ = (id) => document.getElementById(id);

export class DashboardPage {
  constructor(me, onRefused) {
    this.me = me;
    this.onRefused = onRefused;
    this.section = $("dashboard");
  }

  /** Show the page; ``arg`` is what follows "#/dashboard/" in the address, if anything. */
  async open(arg) {
    const title = document.createElement("h2");
    title.id = "dashboard-title";
    title.tabIndex = -1;
    title.textContent = "Dashboard";
    this.section.replaceChildren(title);
    this.section.hidden = false;
  }

  close() {
    this.section.hidden = true;
    this.section.replaceChildren();
  }
}
