// The console's lists: read from momo a page at a time, and searched from a box over some
// of them. Decided here once for every page: an answer to an older read never replaces a
// newer one's; More pages on, and by itself as it scrolls into view; and a search filters
// the rows on the screen at each key, asks the server once the typing pauses, and shows
// the server's answer only for exactly the text in the box.

import { call } from "./api.js";
import { moreOnScroll } from "./more.js";
import { Pause } from "./search.js";

// the rows of a page, where a list does not ask for fewer
const PAGE = 50;
// the server is asked for matches once typing has paused this long
const SEARCH_PAUSE_MS = 300;

/** A page of the list at ``path`` (items and next_cursor) for ``params`` (an object or
 * URLSearchParams), from ``cursor`` (the first page without one). */
export function readPage(path, params = {}, cursor = null, limit = PAGE) {
  const query = new URLSearchParams(params);
  query.set("limit", String(limit));
  if (cursor) query.set("cursor", cursor);
  return call("GET", `${path}?${query}`);
}

/** A list read a page at a time from ``read(cursor)`` (an API page), with its More button.
 * ``took()`` is told once a page is in ``items``, ``failed(error)`` when the newest read
 * fails. ``loading`` shows while a page is read; a ``quiet`` list shows it only for its
 * first page, and is otherwise read again in place. More reads the next page, or does
 * ``next()``. */
export class Pages {
  constructor({ read, more, loading = null, quiet = false, took, failed, next = null }) {
    this.read = read;
    this.more = more;
    this.loading = loading;
    this.quiet = quiet;
    this.took = took;
    this.failed = failed;
    this.items = [];
    this.cursor = null;
    // each read carries a number: an answer to an older one is dropped, never shown
    this.generation = 0;
    more.onclick = next || (() => this.load(false));
    this.unwatch = moreOnScroll(more);
  }

  /** Read the first page again (``fresh``), or the next one. */
  async load(fresh = true) {
    const generation = ++this.generation;
    if (this.loading) this.loading.hidden = this.quiet && (!fresh || this.items.length > 0);
    this.more.disabled = true;
    try {
      const page = await this.read(fresh ? null : this.cursor);
      if (generation !== this.generation) return;
      this.items = fresh ? page.items : [...this.items, ...page.items];
      this.cursor = page.next_cursor;
      this.took();
    } catch (error) {
      if (generation === this.generation) this.failed(error);
    } finally {
      if (generation === this.generation) {
        if (this.loading) this.loading.hidden = true;
        this.more.disabled = false;
      }
    }
  }

  /** Nothing shown, nothing more to read (what was shown no longer holds). */
  clear() {
    this.items = [];
    this.cursor = null;
  }

  /** Whatever is on its way is dropped; More no longer pages by itself. */
  stop() {
    this.generation += 1;
    this.unwatch();
  }
}

/** A paged list with a search box (``box``) over it. ``read(q, cursor)`` reads a page of the
 * list (``q`` empty) or of the server's matches for ``q``. While there is text in the box,
 * ``matching(q, {items, found, answered})`` chooses the rows from those loaded and those
 * the server found so far (``answered``: found for exactly ``q``), and ``said(n, answered,
 * more)`` words the status line. ``row(item)`` draws a row into ``body``; ``took()`` is told
 * after an answer is shown, ``failed(error, searching)`` when the newest read fails;
 * ``unmatched(q)``, if given, words ``noMatch``. */
export class SearchedList {
  constructor({
    read,
    box,
    body,
    more,
    loading,
    empty,
    noMatch,
    status,
    row,
    matching,
    said,
    unmatched,
    took,
    failed,
  }) {
    this.read = read;
    this.box = box;
    this.body = body;
    this.more = more;
    this.empty = empty;
    this.noMatch = noMatch;
    this.status = status;
    this.row = row;
    this.matching = matching;
    this.said = said;
    this.unmatched = unmatched || null;
    this.took = took;
    this.failed = failed;
    this.pages = new Pages({
      read: (cursor) => read("", cursor),
      more,
      loading,
      took: () => {
        this.render();
        took();
      },
      failed: (error) => failed(error, false),
      next: () => (this.q ? this.search(this.q, this.foundCursor) : this.pages.load(false)),
    });
    // the server's matches for the text ``foundFor``, and their next page
    this.q = "";
    this.found = [];
    this.foundFor = null;
    this.foundCursor = null;
    // each search carries a number too: a slower answer to older text is dropped
    this.asked = 0;
    this.pause = new Pause(SEARCH_PAUSE_MS, (q) => this.search(q));
    box.oninput = () => this.typed();
  }

  /** The list from its first page, and the server's matches for the text in the box read
   * again: after a change, or for another list. */
  async refresh() {
    this.forget();
    await Promise.all([this.pages.load(true), this.q ? this.search(this.q) : null]);
  }

  /** Drop the server's matches (another list, or a change made since they were read). */
  forget() {
    this.asked += 1;
    this.pause.cancel();
    this.found = [];
    this.foundFor = null;
    this.foundCursor = null;
  }

  /** A key in the search box: the rows on the screen are filtered now; the server is
   * asked once the typing pauses. */
  typed() {
    const q = this.box.value.trim();
    // a space added at either end changes nothing the server would read
    if (q === this.q) return;
    this.q = q;
    // whatever is on its way for the text before this key is no longer wanted
    this.asked += 1;
    this.render();
    if (q) this.pause.type(q);
    else this.pause.cancel();
  }

  async search(q, cursor = null) {
    const asked = ++this.asked;
    if (cursor) this.more.disabled = true;
    try {
      const page = await this.read(q, cursor);
      if (asked !== this.asked) return;
      this.found = cursor && this.foundFor === q ? [...this.found, ...page.items] : page.items;
      this.foundFor = q;
      this.foundCursor = page.next_cursor;
      this.render();
      this.took();
    } catch (error) {
      if (asked === this.asked) this.failed(error, true);
    } finally {
      if (cursor) this.more.disabled = false;
    }
  }

  /** The rows to show: the list, or, while searching, those ``matching`` chooses. */
  render() {
    const q = this.q;
    const items = this.pages.items;
    const answered = Boolean(q) && this.foundFor === q;
    const shown = q ? this.matching(q, { items, found: this.found, answered }) : items;
    this.body.replaceChildren(...shown.map((item) => this.row(item)));
    this.empty.hidden = Boolean(q) || shown.length > 0;
    this.noMatch.hidden = !answered || shown.length > 0;
    if (this.unmatched) this.noMatch.textContent = this.unmatched(q);
    this.more.hidden = q ? !(answered && this.foundCursor) : !this.pages.cursor;
    this.status.textContent = q ? this.said(shown.length, answered, Boolean(this.foundCursor)) : "";
  }

  /** Whatever is on its way is dropped, and no search is asked any more. */
  stop() {
    this.pages.stop();
    this.forget();
  }
}
