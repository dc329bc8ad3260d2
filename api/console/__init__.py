"""The operator console: a browser screen at /console, built only on the public /api/v1.

Plain HTML, CSS and JavaScript modules shipped inside the package: nothing to build and
nothing to install. The token lives in the browser tab (sessionStorage), never in a cookie,
so the console's own pages hold no secret and need no sign-in of their own.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

STATIC = Path(__file__).parent / "static"

console = Blueprint("console", __name__, static_folder="static", static_url_path="/console/static")

#: the console runs only its own files and talks only to its own origin; no page may frame
#: it (a token typed into a framed console could be watched)
POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


@console.get("/console")
@console.get("/console/")
def index() -> Response:
    response = send_from_directory(STATIC, "index.html")
    # a new momo's console is picked up on the next visit, not after a cache expires
    response.headers["Cache-Control"] = "no-cache"
    return response


@console.after_request
def _policy(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
