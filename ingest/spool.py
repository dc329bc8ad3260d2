"""A local, fsynced spool for callbacks that arrive while the database is unreachable.

M-PESA does not resend a confirmation that got an error, so answering 503
during a database restart would lose it. Instead the webhook appends the
callback to this host's spool file, fsyncs, and acknowledges; a drainer moves
spooled records into the inbox once the database answers again. Each record
carries a unique ``spool_id`` that the inbox keeps, so a drain interrupted
half-way and run again stores nothing twice.

Files in the spool directory (what ``momo check`` and an operator look at):

- ``spool-<host>.jsonl``: a host's live file, appended to by its web processes
  under an exclusive ``flock``. Waiting to drain.
- ``spool-<host>.jsonl.<8 hex>.draining``: a live file a drainer has claimed
  (renamed away under the writers' lock, so appends that arrive during a drain
  go to a fresh live file). Waiting to drain: being drained, or left by a
  drain that stopped and goes on at the next one.
- ``quarantine.jsonl``: records no database takes even in their safe form, or
  that are not spool records at all; moved aside so they hold back nothing,
  never deleted. An operator reads them (one JSON object a line, with the
  reason) and stores or discards each by hand.
- ``drain.lock``: one drainer at a time on the directory (locked through a
  read-only descriptor, so any user who may read it can take it; a process that
  may creates it, and the quarantine file, owned by the directory's owner).

The bound (``MOMO_SPOOL_MAX_BYTES``) holds for every file waiting to drain, live
and claimed, of every host: a drain that keeps failing never earns a fresh one.
A record is acknowledged only once all of its bytes are fsynced: a write the disk
(or a quota, or a file-size limit) cuts short is undone and the caller answers
503. A writer that cannot get the file's lock within the write deadline
(``MOMO_DB_WRITE_TIMEOUT_SECONDS``: another writer stuck on a failing disk, or
stopped while holding it) gives up the same way rather than keep the provider
waiting for no answer.

Any drainer drains every host's files (a host renamed, a container recreated
under a new name, leaves its spool behind for whoever shares the directory).
A record the database refuses for its content is stored as a rejected row in
its safe form (see ``ingest.refusal``) and never holds back the others.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import logging
import os
import pwd
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from core.config import ConfigError, Settings
from core.runtime import Runtime
from ingest.refusal import (
    is_duplicate_spool_id,
    is_refusal,
    refusal_detail,
    refused_row,
    unstorable,
)
from matcher.db import describe_error, refuses_writes
from matcher.models import InboxItem

log = logging.getLogger(__name__)

#: how long a webhook waits for another writer's lock on the spool file before it gives
#: up and answers 503; about as long as it waits for the database's own write
LOCK_TIMEOUT_SECONDS = 3.0


class SpoolError(Exception):
    """The spool cannot take the callback now; the caller must not acknowledge."""


class SpoolFull(SpoolError):
    """The spool reached its size bound."""


class SpoolBusy(SpoolError):
    """Another process held the spool file's lock past the deadline."""


class DatabaseRefusesWrites(Exception):
    """The database answers but takes no writes (a read-only standby, say); nothing drained."""


LIVE_GLOB = "spool-*.jsonl"
DRAINING_SUFFIX = ".draining"
QUARANTINE_NAME = "quarantine.jsonl"


@dataclass(frozen=True)
class DrainResult:
    files: int = 0
    #: rows moved into the inbox, those stored as rejected (safe form) included
    stored: int = 0
    already_stored: int = 0
    unreadable: int = 0
    #: of ``stored``, rows the database refused as sent, kept as rejected in their safe form
    rejected: int = 0
    #: records moved aside to the quarantine file (no database takes them)
    quarantined: int = 0
    #: another drainer held the directory: nothing was done
    busy: bool = False


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


def _row(record: dict[str, Any]) -> dict[str, Any]:
    """The inbox row a spool record stands for; raises on anything that is not a record."""
    return {
        "spool_id": record["spool_id"],
        "provider": record["provider"],
        "kind": record["kind"],
        "body": base64.b64decode(record["body"], validate=True),
        "headers": record.get("headers") or {},
        "client_addr": record.get("client_addr"),
        "received_at": datetime.fromisoformat(record["received_at"]),
        "status": record["status"],
        "reason": record.get("reason"),
        "detail": record.get("detail"),
        "code": record.get("code"),
        "attempts": 0,
    }


def _item(record: dict[str, Any]) -> InboxItem:
    return InboxItem(**_row(record))


@dataclass
class _Tally:
    stored: int = 0
    already: int = 0
    rejected: int = 0
    quarantined: int = 0

    def add(self, other: _Tally) -> None:
        self.stored += other.stored
        self.already += other.already
        self.rejected += other.rejected
        self.quarantined += other.quarantined


class Spool:
    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        host: str | None = None,
        lock_timeout: float = LOCK_TIMEOUT_SECONDS,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.lock_timeout = lock_timeout
        self.host = host or socket.gethostname()
        self.path = directory / f"spool-{self.host}.jsonl"
        self.quarantine_path = directory / QUARANTINE_NAME

    @classmethod
    def for_settings(cls, settings: Settings) -> Spool:
        """This host's spool as configured; its lock waits no longer than a database write."""
        return cls(
            settings.spool_path,
            max_bytes=settings.spool_max_bytes,
            lock_timeout=settings.db_write_timeout_seconds,
        )

    def check_writable(self) -> None:
        """Create the directory, write and fsync a file in it, or raise ConfigError.

        Run at start-up: an unusable spool would otherwise be found only during an
        outage, when every callback then gets 503.
        """
        probe = self.directory / f".probe-{self.host}-{os.getpid()}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"momo spool probe\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            probe.unlink()
            self._fsync_directory()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConfigError(
                f"the spool directory {self.directory} cannot be used ({reason}: "
                f"{exc.filename or self.directory}): callbacks that arrive while the database "
                "is unreachable are kept there, fsynced, before they are acknowledged. Set "
                "MOMO_SPOOL_DIR to a directory on a local disk that this process's user can "
                "create and write (default: MOMO_INSTANCE_PATH/spool), or fix its ownership "
                "and permissions"
            ) from None

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
            waiting = self._waiting_bytes(fd, size)
            if waiting + len(line) > self.max_bytes:
                log.error(
                    "SPOOL FULL: %s holds %d bytes waiting to drain (limit %d, "
                    "MOMO_SPOOL_MAX_BYTES); callbacks are now refused with 503 until the "
                    "database takes writes again and the spool drains",
                    self.directory,
                    waiting,
                    self.max_bytes,
                )
                raise SpoolFull(str(self.directory))
            try:
                _append_whole(fd, line, size)
            except OSError as exc:
                log.error(
                    "SPOOL WRITE FAILED: %s could not take a whole record (%s); the part "
                    "written was removed and the callback is refused with 503. Free space "
                    "on that disk (or raise the quota or file-size limit)",
                    self.path,
                    exc.strerror or exc,
                )
                raise
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

    def _waiting_bytes(self, fd: int, size: int) -> int:
        """Bytes waiting to drain in the whole directory: ``size`` for the file at ``fd``
        (locked by us), the others as they stand."""
        opened = os.fstat(fd)
        others = (
            st.st_size
            for _, st in self.waiting()
            if (st.st_ino, st.st_dev) != (opened.st_ino, opened.st_dev)
        )
        return size + sum(others)

    def _open_locked(self) -> int:
        """This host's live spool file, opened for appending and exclusively locked.

        A drainer may rename the file away between our open and our lock; then
        the locked file is no longer the live one, and we open the new one. Raises
        SpoolBusy when the lock is not ours within ``lock_timeout`` seconds.
        """
        deadline = time.monotonic() + self.lock_timeout
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                self._lock_by(fd, deadline)
            except BaseException:
                os.close(fd)
                raise
            if _is_live(fd, self.path):
                return fd
            os.close(fd)

    def _lock_by(self, fd: int, deadline: float) -> None:
        pause = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        log.error(
            "SPOOL LOCKED: %s stayed locked by another writer for %.1f s (one stuck "
            "on a failing disk, or a stopped process holding it); this callback is refused "
            "with 503. Find the holder with `fuser -v %s`",
            self.path,
            self.lock_timeout,
            self.path,
        )
        raise SpoolBusy(str(self.path))

    def _fsync_directory(self) -> None:
        # A new file's name must be durable too, not only its bytes.
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def pending_files(self) -> list[Path]:
        """Every host's files waiting to drain: live and claimed."""
        if not self.directory.exists():
            return []
        return sorted(self.directory.glob(f"{LIVE_GLOB}*"))

    def waiting(self) -> Iterator[tuple[Path, os.stat_result]]:
        """Every file waiting to drain, with its size and age as they stand now."""
        for path in self.pending_files():
            with contextlib.suppress(FileNotFoundError):  # drained meanwhile
                yield path, path.stat()

    def backlog(self) -> dict[str, int]:
        """Files and bytes waiting to drain (every host's), for a health check."""
        sizes = [st.st_size for _, st in self.waiting()]
        return {"files": len(sizes), "bytes": sum(sizes)}

    def has_records(self) -> bool:
        return any(st.st_size for _, st in self.waiting())

    def _claim(self) -> list[Path]:
        """Rename every host's live file away (each under its lock), so appends start afresh.

        A file is renamed only while we hold the lock of the very file at its path: one
        locked a moment ago may have been renamed and replaced since. Its writers (on this
        host or another sharing the directory) append only under that lock and only to
        the file still at the path, so a record is either in the renamed file or in the
        live file that replaces it.
        """
        claimed = [p for p in self.pending_files() if p.name.endswith(DRAINING_SUFFIX)]
        for live in sorted(self.directory.glob(LIVE_GLOB)):
            target = self._claim_file(live)
            if target is not None:
                claimed.append(target)
        if claimed:
            self._fsync_directory()
        return claimed

    def _claim_file(self, path: Path) -> Path | None:
        while True:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not _is_live(fd, path):
                    continue
                target = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}{DRAINING_SUFFIX}")
                os.rename(path, target)
                return target
            finally:
                os.close(fd)

    @staticmethod
    def _records(path: Path) -> Iterator[Any]:
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
        """One drainer at a time on the directory (every web process runs one); others skip."""
        # read-only: flock needs no more, and a lock file someone else made stays usable
        fd = os.open(self.directory / "drain.lock", os.O_RDONLY | os.O_CREAT, 0o640)
        try:
            self._own_like_directory(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def drain(self, sessions: sessionmaker, *, batch: int = 200) -> DrainResult:
        """Move every spooled record of every host into the inbox; safe to run again.

        Raises (an SQLAlchemyError) only when the database stops answering; what was
        not stored yet stays in the spool for the next drain.
        """
        if not self.pending_files():
            return DrainResult()  # nothing waits: create nothing, ask nothing
        with self._drain_lock() as mine:
            if not mine:
                return DrainResult(busy=True)
            self._check_writes(sessions)
            return self._drain(sessions, batch=batch)

    def _check_writes(self, sessions: sessionmaker) -> None:
        """Raise DatabaseRefusesWrites before any file is claimed: renaming the live file
        away for a drain that cannot store anything would only multiply the files."""
        with sessions() as session, session.get_bind().connect() as connection:
            why = refuses_writes(connection)
        if why is not None:
            raise DatabaseRefusesWrites(
                f"the database takes no writes ({why}); the spooled callbacks stay in "
                f"{self.directory} until it does"
            )

    def _own_like_directory(self, fd: int) -> None:
        """Give a shared file (lock, quarantine) to the directory's owner when it is not
        theirs yet and we may (we are root): the web processes must keep using it."""
        directory = os.stat(self.directory)
        mine = os.fstat(fd)
        if (mine.st_uid, mine.st_gid) != (directory.st_uid, directory.st_gid):
            with contextlib.suppress(PermissionError):
                os.fchown(fd, directory.st_uid, directory.st_gid)

    def _drain(self, sessions: sessionmaker, *, batch: int) -> DrainResult:
        files = unreadable = 0
        tally = _Tally()
        for path in self._claim():
            files += 1
            rows: list[tuple[Any, dict[str, Any]]] = []
            for record in self._records(path):
                if record is None:
                    unreadable += 1
                    continue
                try:
                    rows.append((record, _row(record)))
                except (KeyError, TypeError, ValueError) as exc:
                    self._quarantine(record, path, f"not a spool record ({exc!r})")
                    tally.quarantined += 1
            for start in range(0, len(rows), batch):
                tally.add(self._store_chunk(sessions, rows[start : start + batch], path))
            path.unlink()
        if files:
            log.warning(
                "spool drained: %d file(s), %d callback(s) moved to the inbox (%d of them kept "
                "as rejected: the database refused them as sent), %d already there, "
                "%d quarantined, %d unreadable line(s)",
                files,
                tally.stored,
                tally.rejected,
                tally.already,
                tally.quarantined,
                unreadable,
            )
        return DrainResult(
            files, tally.stored, tally.already, unreadable, tally.rejected, tally.quarantined
        )

    def _store_chunk(
        self, sessions: sessionmaker, chunk: list[tuple[Any, dict[str, Any]]], path: Path
    ) -> _Tally:
        """Store a chunk in one transaction; if the database refuses it, record by record."""
        tally = _Tally()
        try:
            with sessions.begin() as session:
                ids = [row["spool_id"] for _, row in chunk]
                seen = set(
                    session.scalars(select(InboxItem.spool_id).where(InboxItem.spool_id.in_(ids)))
                )
                for _, row in chunk:
                    if row["spool_id"] in seen:
                        tally.already += 1
                        continue
                    why = unstorable(row)
                    if why is not None:
                        row = refused_row(row, why)
                        tally.rejected += 1
                    session.add(InboxItem(**row))
                    seen.add(row["spool_id"])
                    tally.stored += 1
            return tally
        except Exception as exc:
            if not (is_refusal(exc) or is_duplicate_spool_id(exc)):
                raise  # the database is unreachable: the file waits for the next drain
            log.warning(
                "the database refused a chunk of %d spooled callback(s) (%s); storing them "
                "one by one",
                len(chunk),
                exc.__class__.__name__,
            )
        tally = _Tally()
        for record, row in chunk:
            tally.add(self._store_one(sessions, record, row, path))
        return tally

    def _store_one(
        self, sessions: sessionmaker, record: Any, row: dict[str, Any], path: Path
    ) -> _Tally:
        """One record in its own transaction: as sent, else in its safe form, else aside."""
        why = unstorable(row)
        forms = [(row, False)] if why is None else [(refused_row(row, why), True)]
        while forms:
            form, safe = forms.pop(0)
            try:
                with sessions.begin() as session:
                    found = session.scalar(
                        select(InboxItem.id).where(InboxItem.spool_id == row["spool_id"])
                    )
                    if found is not None:
                        return _Tally(already=1)
                    session.add(InboxItem(**form))
            except Exception as exc:
                if is_duplicate_spool_id(exc):
                    return _Tally(already=1)
                if not is_refusal(exc):
                    raise
                why = refusal_detail(exc)
                if not safe:
                    forms.append((refused_row(row, why), True))
                continue
            return _Tally(stored=1, rejected=int(safe))
        self._quarantine(record, path, f"the database refuses even its safe form ({why})")
        return _Tally(quarantined=1)

    def _quarantine(self, record: Any, source: Path, reason: str) -> None:
        """Keep ``record`` aside (fsynced, never deleted), once, and say so loudly."""
        spool_id = record.get("spool_id") if isinstance(record, dict) else None
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.quarantine_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            self._own_like_directory(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if spool_id is not None and spool_id in _quarantined_ids(fd):
                return  # a drain stopped after quarantining it, and this one read it again
            entry = {
                "quarantined_at": datetime.now(UTC).isoformat(),
                "reason": reason,
                "source": source.name,
                "record": record,
            }
            _append_whole(fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())
        finally:
            os.close(fd)
        self._fsync_directory()
        log.error(
            "SPOOL RECORD QUARANTINED: a spooled callback (spool id %s) from %s cannot be "
            "stored: %s. It is kept in %s, and nothing else waits for it; read it there and "
            "store or discard it by hand",
            spool_id,
            source.name,
            reason,
            self.quarantine_path,
        )


def _append_whole(fd: int, data: bytes, size: int | None = None) -> None:
    """Append all of ``data`` and fsync, or put the file back as it was and raise OSError.

    A disk, quota or file-size limit that fills mid-record makes ``write`` take part of
    it and report success; the rest then fails. Half a record must never stand as
    acknowledged, nor run into the next one.
    """
    if size is None:
        size = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            if written == 0:  # never for a regular file, but never loop on it either
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            view = view[written:]
        os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
            os.fsync(fd)
        raise


def _is_live(fd: int, path: Path) -> bool:
    """Is the file open at ``fd`` still the one at ``path``?"""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (current.st_ino, current.st_dev) == (opened.st_ino, opened.st_dev)


def _quarantined_ids(fd: int) -> set[str]:
    ids = set()
    with os.fdopen(os.dup(fd), "rb") as f:
        f.seek(0)
        for raw in f:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                ids.add(json.loads(raw)["record"]["spool_id"])
    return ids


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _unusable(exc: OSError, directory: Path) -> str:
    """What a drainer that cannot use a spool file should tell the operator."""
    user = user_name(os.geteuid())
    return (
        f"cannot use {exc.filename or directory} ({exc.strerror or exc}). This process runs "
        f"as {user}: every file in {directory} (spool files, drain.lock, quarantine.jsonl) "
        f"must be readable and writable by it; one made by another user (`momo spool drain` "
        f"run as root?) must be given back, e.g. chown -R {user} {directory}"
    )


def attach_spool(runtime: Runtime) -> Spool:
    """Give the webhook a spool, and start the thread that drains it when the database is back."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from core.nudge import Nudger
    from matcher.db import answer_within

    settings = runtime.settings
    spool = Spool.for_settings(settings)

    def drain(_nudged: bool) -> None:
        if not spool.has_records():
            return
        try:
            # ask first (briefly), so an outage does not rename the live file away every tick
            with (
                answer_within(settings.db_write_timeout_seconds),
                runtime.engine.connect() as connection,
            ):
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            log.warning(
                "spool not drained yet, the database is still unreachable: %s", describe_error(exc)
            )
            return
        try:
            result = spool.drain(runtime.sessions)
        except SQLAlchemyError as exc:
            log.warning(
                "spool drain stopped (%s); it goes on at the next tick", describe_error(exc)
            )
            return
        except DatabaseRefusesWrites as exc:
            log.warning("spool not drained yet: %s", exc)
            return
        except OSError as exc:
            log.error("SPOOL NOT DRAINED: %s", _unusable(exc, spool.directory))
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
