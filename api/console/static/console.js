// The console's frame: sign in with a token, learn its role, and show the page the address
// names (#/payments, #/customers/ACC1042, ...); Payments when it names none.

import { call, tokenStore } from "./api.js";
import { CustomersPage } from "./customers.js";
import { DashboardPage } from "./dashboard.js";
import { PaymentsPage } from "./payments.js";
import { RequestsPage } from "./requests.js";
import { TransactionsPage } from "./transactions.js";

const PAGES = {
  dashboard: DashboardPage,
  payments: PaymentsPage,
  customers: CustomersPage,
  transactions: TransactionsPage,
  requests: RequestsPage,
};
const FIRST = "payments";

const $ = (id) => document.getElementById(id);
let me = null;
let page = null;
// each navigation carries a number: a page opened by an older one is closed at once
let shown = 0;

function refused(detail) {
  askForToken(`momo no longer accepts this token (${detail}); sign in again.`);
}

function leave() {
  shown += 1;
  if (page) page.close();
  page = null;
}

function askForToken(message, { keepToken = false } = {}) {
  leave();
  me = null;
  if (!keepToken) tokenStore.clear();
  $("who").hidden = true;
  $("zone").hidden = true;
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  const error = $("sign-in-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("token").value = "";
  $("token").focus();
}

/** ``#/customers/ACC%201042`` -> ["customers", "ACC 1042"]; an unknown name, or an
 * address that is not properly encoded (``%ZZ``), -> Payments. */
function where() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  if (!Object.hasOwn(PAGES, name)) return [FIRST, ""];
  try {
    return [name, rest.map(decodeURIComponent).join("/")];
  } catch {
    return [FIRST, ""];
  }
}

/** After signing in, the keyboard starts at the page's heading, not the top of the
 * document: the next Tab reaches the page's first control. */
function focusPage() {
  const heading = document.querySelector("main > section:not([hidden]) h2");
  if (!heading) return;
  if (!heading.hasAttribute("tabindex")) heading.setAttribute("tabindex", "-1");
  heading.focus();
}

async function go() {
  if (!me) return;
  leave();
  const mine = shown;
  const [name, arg] = where();
  for (const link of $("nav").querySelectorAll("a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const opened = new PAGES[name](me, refused);
  page = opened;
  await opened.open(arg);
  if (mine !== shown) opened.close();
}

async function enter(token) {
  const answer = await call("GET", "/me", { token });
  tokenStore.set(token);
  me = answer;
  $("sign-in").hidden = true;
  $("who").textContent = `${me.name} (${me.role})`;
  $("who").hidden = false;
  // every time on every page is this zone's, whatever the browser's own
  $("zone").textContent = `Times in ${me.timezone}`;
  $("zone").hidden = false;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  document.body.dataset.role = me.role;
  await go();
  focusPage();
}

window.addEventListener("hashchange", () => go());
// the link of the page already shown reads it again (a payment may have come since)
$("nav").addEventListener("click", (event) => {
  const link = event.target.closest("a");
  if (link && link.hash === location.hash) {
    event.preventDefault();
    go();
  }
});

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  const error = $("sign-in-error");
  if (!token) {
    error.textContent = "Paste an API token to sign in.";
    error.hidden = false;
    return;
  }
  const button = event.submitter || $("sign-in-form").querySelector("button");
  button.disabled = true;
  try {
    await enter(token);
  } catch (refusal) {
    const why =
      refusal.status === 401
        ? "That token was refused: it is unknown or revoked. Check that it was pasted whole, " +
          "or make a new one with `momo token create`."
        : `Could not sign in: ${refusal.message}`;
    askForToken(why);
  } finally {
    button.disabled = false;
  }
});

$("sign-out").addEventListener("click", () => askForToken(""));

const saved = tokenStore.get();
if (saved) {
  enter(saved).catch((refusal) =>
    refusal.status === 401
      ? askForToken("The token this tab kept is no longer accepted; sign in again.")
      : // momo restarting is no reason to forget the token: reloading tries it again
        askForToken(`Could not sign in: ${refusal.message} Reload the page to try again.`, {
          keepToken: true,
        }),
  );
} else {
  askForToken("");
}
