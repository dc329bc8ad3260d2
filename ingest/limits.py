"""A cheap brake on unauthenticated webhook traffic.

Wrong path tokens and disallowed addresses never reach the database, but a
flood of them still occupies web workers. Each address gets a budget of such
failures per minute; past it, it is answered 429 at once. Only failures are
counted, so a caller presenting the right token is never throttled: M-PESA
does not resend a refused confirmation.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class FailureLimiter:
    def __init__(self, per_minute: int = 60, *, max_addresses: int = 10_000) -> None:
        self.per_minute = per_minute
        self.max_addresses = max_addresses
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def fail(self, address: str) -> bool:
        """Count one failure; True when the address is now over its budget."""
        now = time.monotonic()
        with self._lock:
            started, count = self._windows.pop(address, (now, 0))
            if now - started >= 60:
                started, count = now, 0
            count += 1
            self._windows[address] = (started, count)
            while len(self._windows) > self.max_addresses:
                self._windows.popitem(last=False)  # forget the least recently seen
            return count > self.per_minute
