// The console's frame: sign in with a token, learn its role, open the Payments page.

import { call, tokenStore } from "./api.js";
import { PaymentsPage } from "./payments.js";

const $ = (id) => document.getElementById(id);
let page = null;

function askForToken(message, { keepToken = false } = {}) {
  if (page) page.close();
  page = null;
  if (!keepToken) tokenStore.clear();
  $("who").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  const error = $("sign-in-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("token").value = "";
  $("token").focus();
}

async function enter(token) {
  const me = await call("GET", "/me", { token });
  tokenStore.set(token);
  $("sign-in").hidden = true;
  $("who").textContent = `${me.name} (${me.role})`;
  $("who").hidden = false;
  $("sign-out").hidden = false;
  document.body.dataset.role = me.role;
  page = new PaymentsPage(me, (detail) =>
    askForToken(`momo no longer accepts this token (${detail}); sign in again.`),
  );
  await page.open();
}

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
