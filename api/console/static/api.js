// The console's only way to momo: the public /api/v1, with the tab's token.

const BASE = "/api/v1";
const KEY = "momo.token";

/** A refusal from the API (or no answer at all), worded for the person at the screen. */
export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

// sessionStorage: the token lives as long as the tab, and no other tab or later visit sees it
export const tokenStore = {
  get: () => sessionStorage.getItem(KEY),
  set: (token) => sessionStorage.setItem(KEY, token),
  clear: () => sessionStorage.removeItem(KEY),
};

/** A random Idempotency-Key; crypto.getRandomValues works on plain http too. */
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The JSON answer of `method path`, or an ApiError saying what went wrong. */
export async function call(method, path, options = {}) {
  return (await request(method, path, options)).answer;
}

/** `{status, answer}` of `method path` (201 made, 200 found), or an ApiError. */
export async function request(method, path, { token = tokenStore.get(), body, key } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (key) headers["Idempotency-Key"] = key;
  let response;
  try {
    response = await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new ApiError(0, "unreachable", "momo did not answer: check that the server is running and try again.");
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    answer = null;
  }
  if (!response.ok) {
    const detail = answer && answer.detail ? answer.detail : `momo answered ${response.status} ${response.statusText}.`;
    throw new ApiError(response.status, answer && answer.code ? answer.code : "error", detail);
  }
  return { status: response.status, answer };
}
