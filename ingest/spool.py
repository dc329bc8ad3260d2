"""A local, fsynced spool for callbacks that arrive while the database is unreachable.

M-PESA does not resend a confirmation that got an error, so answering 503
during a database restart would lose it. Instead the webhook appends the
callback to this host's spool file, fsyncs, and acknowledges; a drainer moves
spooled records into the inbox once the database answers again. Each record
carries a unique ``spool_id`` that the inbox keeps, so a drain interrupted
half-way and run again stores nothing twice.

One file per host: web processes on the host append under an exclusive
``flock``; the drainer renames the file away before reading it, so appends
that arrive during a drain go to a fresh file.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from matcher.models import InboxItem

log = logging.getLogger(__name__)


class SpoolFull(Exception):
    """The spool reached its size bound; the caller must not acknowledge."""


@dataclass(frozen=True)
class DrainResult:
    files: int = 0
    stored: int = 0
    already_stored: int = 0
    unreadable: int = 0


def _record(item: InboxItem) -> dict[str, Any]:
    return {
        "spool_id": item.spool_id,
        "provider": item.provider,
        "kind": item.kind,
        "body": base64.b64encode(item.body).decode(),
        "headers": item.headers,
        "client_addr": item.client_addr,
        "received_at": item.received_at.isoformat(),
        "status": item.status,
        "reason": item.reason,
        "detail": item.detail,
        "code": item.code,
    }


def _item(record: dict[str, Any]) -> InboxItem:
    return InboxItem(
        spool_id=record["spool_id"],
        provider=record["provider"],
        kind=record["kind"],
        body=base64.b64decode(record["body"]),
        headers=record.get("headers") or {},
        client_addr=record.get("client_addr"),
        received_at=datetime.fromisoformat(record["received_at"]),
        status=record["status"],
        reason=record.get("reason"),
        detail=record.get("detail"),
        code=record.get("code"),
        attempts=0,
    )


class Spool:
    def __init__(self, directory: Path, *, max_bytes: int, host: str | None = None) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.host = host or socket.gethostname()
        self.path = directory / f"spool-{self.host}.jsonl"

    def append(self, item: InboxItem) -> str:
        """Write the callback durably (fsynced) and return its spool id; raise when impossible."""
        item.spool_id = item.spool_id or str(uuid.uuid4())
        if item.received_at is None:
            from matcher.db import utcnow

            item.received_at = utcnow()
        line = (json.dumps(_record(item), separators=(",", ":")) + "\n").encode()
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = self._open_locked()
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # A writer killed mid-line left a torn record; end it so ours stands alone.
                line = b"\n" + line
            if size + len(line) > self.max_bytes:
                log.error(
                    "SPOOL FULL: %s holds %d bytes (limit %d, MOMO_SPOOL_MAX_BYTES); "
                    "callbacks are now refused with 503 until the database is back and the "
                    "spool drains",
                    self.path,
                    size,
                    self.max_bytes,
                )
                raise SpoolFull(str(self.path))
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock
        self._fsync_directory()
        log.warning(
            "database unreachable: %s %s callback spooled to %s (spool id %s)",
            item.provider,
            item.kind,
            self.path,
            item.spool_id,
        )
        return item.spool_id

    def _open_locked(self) -> int:
        """This host's live spool file, opened for appending and exclusively locked.

        A drainer may rename the file away between our open and our lock; then
        the locked file is no longer the live one, and we open the new one.
        """
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self._is_live(fd):
                return fd
            os.close(fd)

    def _fsync_directory(self) -> None:
        # A new file's name must be durable too, not only its bytes.
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def pending_files(self) -> list[Path]:
        if not self.directory.exists():
            return []
        return sorted(self.directory.glob("spool-*.jsonl*"))

    def has_records(self) -> bool:
        return any(p.stat().st_size > 0 for p in self.pending_files() if p.exists())

    def _claim(self) -> list[Path]:
        """Rename this host's live file away (under its lock), so new appends start afresh.

        The file is renamed only while we hold the lock of the very file at the path:
        one locked a moment ago may have been renamed and replaced since.
        """
        claimed = [p for p in self.pending_files() if p.name.endswith(".draining")]
        while True:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return claimed
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not self._is_live(fd):
                    continue
                target = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex[:8]}.draining")
                os.rename(self.path, target)
                claimed.append(target)
            finally:
                os.close(fd)
            self._fsync_directory()
            return claimed

    def _is_live(self, fd: int) -> bool:
        """Is the file open at ``fd`` still the one at this host's spool path?"""
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return False
        opened = os.fstat(fd)
        return (current.st_ino, current.st_dev) == (opened.st_ino, opened.st_dev)

    @staticmethod
    def _records(path: Path) -> Iterator[dict[str, Any] | None]:
        with path.open("rb") as f:
            for raw in f:
                if not raw.strip():
                    continue
                try:
                    yield json.loads(raw)
                except ValueError:
                    yield None  # a torn last line from a crash mid-write: never acknowledged

    @contextmanager
    def _drain_lock(self) -> Iterator[bool]:
        """One drainer at a time on a host (every web process runs one); others skip."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / "drain.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def drain(self, sessions: sessionmaker, *, batch: int = 200) -> DrainResult:
        """Move every spooled record into the inbox; safe to run again after a crash."""
        with self._drain_lock() as mine:
            if not mine:
                return DrainResult()
            return self._drain(sessions, batch=batch)

    def _drain(self, sessions: sessionmaker, *, batch: int) -> DrainResult:
        files = stored = already = unreadable = 0
        for path in self._claim():
            files += 1
            records = list(self._records(path))
            good = [r for r in records if r is not None]
            unreadable += len(records) - len(good)
            for start in range(0, len(good), batch):
                chunk = good[start : start + batch]
                with sessions.begin() as session:
                    ids = [r["spool_id"] for r in chunk]
                    seen = set(
                        session.scalars(
                            select(InboxItem.spool_id).where(InboxItem.spool_id.in_(ids))
                        )
                    )
                    for record in chunk:
                        if record["spool_id"] in seen:
                            already += 1
                            continue
                        session.add(_item(record))
                        seen.add(record["spool_id"])
                        stored += 1
            path.unlink()
        if files:
            log.warning(
                "spool drained: %d file(s), %d callback(s) moved to the inbox, %d already there, "
                "%d unreadable line(s)",
                files,
                stored,
                already,
                unreadable,
            )
        return DrainResult(files, stored, already, unreadable)


def attach_spool(runtime: Any) -> Spool:
    """Give the webhook a spool, and start the thread that drains it when the database is back."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from tasks.nudge import Nudger

    settings = runtime.settings
    spool = Spool(settings.spool_path, max_bytes=settings.spool_max_bytes)

    def drain(_nudged: bool) -> None:
        if not spool.has_records():
            return
        try:
            # ask first, so an outage does not rename the live file away every tick
            with runtime.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            log.warning("spool not drained yet, the database is still unreachable: %s", exc)
            return
        try:
            result = spool.drain(runtime.sessions)
        except SQLAlchemyError as exc:
            log.warning("spool drain stopped (%s); it goes on at the next tick", exc)
            return
        if result.stored:
            runtime.nudge()

    drainer = Nudger(
        drain,
        min_interval=0,
        idle_interval=settings.spool_drain_seconds,
        name="momo-spool-drainer",
    )
    drainer.start()
    runtime.spool = spool
    runtime.helpers.append(drainer)
    return spool
