"""A webhook path carries its provider's secret token: logs see it masked.

``/webhooks/mpesa/<token>/c2b/confirmation`` is written as
``/webhooks/mpesa/***/c2b/confirmation`` wherever momo's processes log a path:
momo's own log calls, Flask's, werkzeug's request log under ``momo serve`` and
gunicorn's error and access logs. Whatever token a request carried is masked,
right or wrong: a near miss is still most of the secret.
"""

from __future__ import annotations

import logging
import re

#: where every provider's callbacks arrive: /webhooks/<provider>/<token>/<kind>
WEBHOOK_PREFIX = "/webhooks/"
MASK = "***"

_TOKEN_SEGMENT = re.compile(r"(/webhooks/[^/\s\"'?#]*/)[^/\s\"'?#]+")

#: loggers whose records can hold a request path: the servers' (werkzeug for `momo serve`,
#: gunicorn's error and access logs), Flask's app logger (named after the app, "momo") and
#: momo's web edge. A filter on a logger sees only the records logged on it, hence the list.
PATH_LOGGERS = (
    "werkzeug",
    "gunicorn.error",
    "gunicorn.access",
    "momo",
    "core.web",
    "ingest.fast",
    "ingest.views",
)


def mask_webhook_paths(text: str, mask: str = MASK) -> str:
    """``text`` with the token segment of every webhook path in it replaced by ``mask``."""
    if WEBHOOK_PREFIX not in text:
        return text
    return _TOKEN_SEGMENT.sub(lambda m: m.group(1) + mask, text)


class MaskWebhookPaths(logging.Filter):
    """Rewrites a record's message, traceback and stack with the webhook tokens masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_webhook_paths(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            # formatted here, once, so that every handler prints the masked text
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_webhook_paths(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_webhook_paths(record.stack_info)
        return True


def mask_logged_paths() -> None:
    """Install the mask on every logger in PATH_LOGGERS (once per process)."""
    for name in PATH_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskWebhookPaths) for f in logger.filters):
            logger.addFilter(MaskWebhookPaths())
