// Times in the business's time zone, money as the API wrote it: never through a float.

/** "3 Nov 2025, 14:30" for an ISO time, in ``zone``. */
export function dateTime(iso, zone) {
  return new Intl.DateTimeFormat("en-GB", {
    timeZone: zone,
    day: "numeric",
    month: "short",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  }).format(new Date(iso));
}

/** "KES 1,500.00" (no-break space) for the decimal string "1500.00": digits are grouped as text. */
export function money(amount, currency) {
  const negative = amount.startsWith("-");
  const [whole, fraction] = (negative ? amount.slice(1) : amount).split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  // a no-break space: "KES" never ends a line with its amount on the next
  return `${negative ? "-" : ""}${currency}\u00a0${grouped}${fraction === undefined ? "" : "." + fraction}`;
}

const REASONS = {
  shared_phone: "Shared phone",
  no_match: "No match",
  invalid_phone: "Invalid phone",
  invalid_reference: "Invalid reference",
  disassociated: "Disassociated",
  reversed: "Reversed by the provider",
};

/** Why a payment is unassociated, in words; its candidates for a shared phone. */
export function reason(code, candidates) {
  const words = REASONS[code] || code || "";
  return code === "shared_phone" && candidates && candidates.length
    ? `${words} (${candidates.join(", ")})`
    : words;
}
