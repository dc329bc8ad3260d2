// A page's error line: what could not be done, in the API's words. A token momo no longer
// accepts is no error of the page's: the console asks for a new one instead.

/** ``line`` says that ``what`` failed and why, unless the token was refused: then
 * ``onRefused`` is told and the line is left as it is. Whether the line says it. */
export function showError(line, what, error, onRefused) {
  if (error.status === 401) {
    onRefused(error.message);
    return false;
  }
  line.textContent = `${what}: ${error.message}`;
  line.hidden = false;
  return true;
}

/** ``line`` says nothing. */
export function hideError(line) {
  line.hidden = true;
  line.textContent = "";
}
