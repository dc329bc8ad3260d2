// "More" for long lists: the button pages on when pressed, and by itself as soon as it
// scrolls into view, so a list grows as it is scrolled and the keyboard still has a button.

/** Press ``button`` whenever it comes into view while shown and enabled; returns a
 * function that stops watching. */
export function moreOnScroll(button) {
  const watcher = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting && !button.hidden && !button.disabled) button.click();
    }
  });
  watcher.observe(button);
  return () => watcher.disconnect();
}
