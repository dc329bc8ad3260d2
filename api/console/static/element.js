// Elements made in one call from their attributes, for the pages that build their screens
// from attributes (Dashboard, Transactions).

/** ``element("p", {class: "hint", text: "…"}, child)``: the attributes set as given, except
 * ``text``, the element's text; ``children`` appended. */
export function element(tag, attributes = {}, ...children) {
  const made = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") made.textContent = value;
    else made.setAttribute(name, value);
  }
  made.append(...children);
  return made;
}
