// A bar chart drawn as SVG with the DOM alone: no library, no inline styles (the console's
// Content-Security-Policy allows none), so sizes are SVG attributes and looks are classes.
// Amounts stay exact: they are read from the API's decimal strings into whole minor units
// (BigInt), and only a bar's height in pixels is ever a fraction.

const SVG = "http://www.w3.org/2000/svg";

/** "1500.00" -> 150000n (minor units); "-40.5" -> -4050n. */
export function minorUnits(amount) {
  const negative = amount.startsWith("-");
  const [whole, fraction = ""] = (negative ? amount.slice(1) : amount).split(".");
  const minor = BigInt(whole || "0") * 100n + BigInt((fraction + "00").slice(0, 2));
  return negative ? -minor : minor;
}

/** 150000n -> "1500.00": the decimal string money() formats. */
export function decimal(minor) {
  const negative = minor < 0n;
  const size = negative ? -minor : minor;
  return `${negative ? "-" : ""}${size / 100n}.${String(size % 100n).padStart(2, "0")}`;
}

/** The smallest 1, 2 or 5 times a power of ten (in minor units) at or above ``top``, so the
 * scale's lines fall on round amounts; one currency unit when everything is zero. */
export function roundTop(top) {
  let step = 100n;
  for (;;) {
    for (const times of [1n, 2n, 5n]) if (step * times >= top) return step * times;
    step *= 10n;
  }
}

function svg(tag, attributes = {}, text) {
  const made = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, String(value));
  if (text !== undefined) made.textContent = text;
  return made;
}

/**
 * An <svg> of one bar per item of ``bars``: ``{amount, label, tick}``, where ``amount`` is a
 * decimal string, ``label`` what the bar says to a screen reader and as a tooltip, and
 * ``tick`` its short name under the axis. ``money(decimal)`` words the scale; ``width``
 * is the room the chart has, in CSS pixels.
 */
export function barChart({ bars, money, width, height = 260, title }) {
  const amounts = bars.map((bar) => minorUnits(bar.amount));
  const top = roundTop(amounts.reduce((most, amount) => (amount > most ? amount : most), 0n));
  const scale = [top, top / 2n, 0n].map((amount) => [amount, money(decimal(amount))]);
  // room on the left for the longest amount on the scale, at about 7.5 px a character
  const left = Math.ceil(Math.max(...scale.map(([, words]) => words.length)) * 7.5) + 12;
  const right = 8;
  const above = 10;
  const below = 28;
  const plotWidth = Math.max(width - left - right, bars.length * 3, 60);
  const plotHeight = height - above - below;
  const full = left + plotWidth + right;
  const chart = svg("svg", {
    class: "chart",
    viewBox: `0 0 ${full} ${height}`,
    width: full,
    height,
    role: "group",
  });
  if (title) chart.setAttribute("aria-label", title);
  const y = (amount) => above + plotHeight - Number((amount * BigInt(plotHeight * 100)) / top) / 100;

  const axis = svg("g", { class: "chart-axis", "aria-hidden": "true" });
  for (const [amount, words] of scale) {
    const at = y(amount);
    axis.append(
      svg("line", { class: amount === 0n ? "chart-base" : "chart-grid", x1: left, x2: left + plotWidth, y1: at, y2: at }),
      svg("text", { class: "chart-scale", x: left - 6, y: at, "text-anchor": "end", "dominant-baseline": "middle" }, words),
    );
  }
  chart.append(axis);

  const slot = plotWidth / Math.max(bars.length, 1);
  const barWidth = Math.max(slot * 0.72, 1);
  // a name under every bar when they fit, else under every second, third, ... bar
  const widest = Math.max(1, ...bars.map((bar) => bar.tick.length)) * 7 + 8;
  const every = Math.max(1, Math.ceil(widest / slot));
  const group = svg("g", { class: "chart-bars" });
  bars.forEach((bar, index) => {
    const x = left + index * slot;
    const at = y(amounts[index] > 0n ? amounts[index] : 0n);
    const bucket = svg("g", { class: "chart-bucket", role: "img", "aria-label": bar.label });
    bucket.append(
      svg("title", {}, bar.label),
      // the whole column answers the pointer, so a day with nothing still has its tooltip
      svg("rect", { class: "chart-hit", x, y: above, width: slot, height: plotHeight }),
      svg("rect", {
        class: amounts[index] > 0n ? "chart-bar" : "chart-bar chart-empty",
        x: x + (slot - barWidth) / 2,
        y: at,
        width: barWidth,
        height: Math.max(above + plotHeight - at, 0),
      }),
    );
    group.append(bucket);
    if (index % every === 0) {
      axis.append(
        svg("text", { class: "chart-tick", x: x + slot / 2, y: height - 8, "text-anchor": "middle" }, bar.tick),
      );
    }
  });
  chart.append(group);
  return chart;
}
