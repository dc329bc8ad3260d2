"""A cheap brake on unauthenticated webhook traffic.

Wrong path tokens and disallowed addresses never reach the database, but a
flood of them still occupies web workers. Each address gets a budget of such
failures per minute; past it, it is answered 429 at once. Only failures are
counted, so a caller presenting the right token is never throttled: M-PESA
does not resend a refused confirmation.

The budget is per address, not per process: with a Redis broker it is counted
in Redis, where every web process of every host using that Redis sees it; with
any other set-up (RabbitMQ, or no broker), in a small file under the instance
folder, which every web process of the host sees (each host then has a budget of
its own). When that shared count cannot be reached, a process counts on its own
until it can again (the brake loosens; a request never fails for it).
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.config import Settings

log = logging.getLogger(__name__)

#: the length of one address's window, in seconds
WINDOW = 60
#: the Redis key of an address's failures in its current window
REDIS_KEY = "momo:unauthenticated:{address}"
#: the shared count on a host without Redis, under MOMO_INSTANCE_PATH
COUNTS_FILE = "unauthenticated.counts"
#: how long a process counts on its own after the shared count failed, before trying again
RETRY_SHARED_AFTER = 5.0


class Limiter(Protocol):
    per_minute: int

    def fail(self, address: str) -> bool:
        """Count one failure; True when the address is now over its budget."""
        ...


class FailureLimiter:
    """The count of this process alone: what the shared counts fall back on."""

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
            if now - started >= WINDOW:
                started, count = now, 0
            count += 1
            self._windows[address] = (started, count)
            while len(self._windows) > self.max_addresses:
                self._windows.popitem(last=False)  # forget the least recently seen
            return count > self.per_minute


class _Shared:
    """A shared count, with this process's own count while the shared one is out of reach."""

    what = "shared count"

    def __init__(
        self, per_minute: int, fallback: FailureLimiter | None, retry_after: float
    ) -> None:
        self.per_minute = per_minute
        self.fallback = fallback or FailureLimiter(per_minute)
        self.retry_after = retry_after
        self._out_until = 0.0

    def fail(self, address: str) -> bool:
        now = time.monotonic()
        if now < self._out_until:
            return self.fallback.fail(address)
        try:
            count = self._count(address)
        except Exception as exc:  # whatever it is, the brake must never fail a request
            if not self._out_until:
                log.warning(
                    "unauthenticated-traffic brake: the %s failed (%s: %s); this process "
                    "counts on its own until it answers again",
                    self.what,
                    type(exc).__name__,
                    exc,
                )
            self._out_until = now + self.retry_after
            return self.fallback.fail(address)
        if self._out_until:
            log.info("unauthenticated-traffic brake: the %s answers again", self.what)
            self._out_until = 0.0
        return count > self.per_minute

    def _count(self, address: str) -> int:
        raise NotImplementedError


class RedisFailureLimiter(_Shared):
    """Failures per address in a Redis key that lives one window from the first failure."""

    what = "Redis count"

    def __init__(
        self,
        client: redis.Redis,
        per_minute: int,
        *,
        fallback: FailureLimiter | None = None,
        retry_after: float = RETRY_SHARED_AFTER,
    ) -> None:
        super().__init__(per_minute, fallback, retry_after)
        self.client = client

    def _count(self, address: str) -> int:
        key = REDIS_KEY.format(address=address[:64])  # an address is at most 45 characters
        pipe = self.client.pipeline(transaction=True)
        pipe.set(key, 0, ex=WINDOW, nx=True)  # a new window starts with this failure
        pipe.incr(key)
        pipe.ttl(key)
        _, count, ttl = pipe.execute()
        if ttl < 0:  # the window ended between SET and INCR: INCR made a key that never expires
            self.client.expire(key, WINDOW)
        return int(count)

    def close(self) -> None:
        self.client.close()


#: one slot of the counts file: when its window started (Unix time) and its failures since
_SLOT = struct.Struct("<dq")
#: the counts file is locked per slot with POSIX locks, which belong to a process: threads
#: of one process take this lock first
_FILE_THREADS = threading.Lock()


class FileFailureLimiter(_Shared):
    """Failures per address in a file every process of the host opens.

    Addresses are hashed into ``slots`` fixed slots. Two addresses that share a slot
    share a budget; that can only bring an unauthenticated caller's 429 sooner, since
    a caller with the right token is never counted.
    """

    what = "counts file"

    def __init__(
        self,
        path: Path,
        per_minute: int,
        *,
        slots: int = 4096,
        fallback: FailureLimiter | None = None,
        retry_after: float = RETRY_SHARED_AFTER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(per_minute, fallback, retry_after)
        self.path = path
        self.slots = slots
        self.clock = clock
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            if os.fstat(fd).st_size < self.slots * _SLOT.size:
                os.ftruncate(fd, self.slots * _SLOT.size)  # zeros: every window long over
            self._fd, self._pid = fd, os.getpid()
        return self._fd

    def _count(self, address: str) -> int:
        offset = (zlib.crc32(address.encode()) % self.slots) * _SLOT.size
        with _FILE_THREADS:
            fd = self._file()
            fcntl.lockf(fd, fcntl.LOCK_EX, _SLOT.size, offset, os.SEEK_SET)
            try:
                now = self.clock()
                raw = os.pread(fd, _SLOT.size, offset)
                started, count = _SLOT.unpack(raw) if len(raw) == _SLOT.size else (0.0, 0)
                if not 0 <= now - started < WINDOW:  # over, or the clock went back
                    started, count = now, 0
                count += 1
                os.pwrite(fd, _SLOT.pack(started, count), offset)
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, _SLOT.size, offset, os.SEEK_SET)
        return count

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


def failure_limiter(settings: Settings) -> FileFailureLimiter | RedisFailureLimiter:
    """The brake for these settings: in Redis with a Redis broker, else in the counts file."""
    per_minute = settings.unauthenticated_per_minute
    broker = settings.broker_url or ""
    if broker.startswith(("redis://", "rediss://")):
        client = redis.Redis.from_url(
            broker,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            # one try: while Redis is out, the process counts alone (see _Shared)
            retry=Retry(NoBackoff(), 0),
        )
        return RedisFailureLimiter(client, per_minute)
    return FileFailureLimiter(settings.instance_path / COUNTS_FILE, per_minute)
