"""Workers' heartbeats: each worker notes when it last finished a task, and ``/readyz``
asks when any last did.

The note is a row per worker in the database (``worker_heartbeats``), not a key in the
broker: it reads the same on Redis and RabbitMQ, and a worker that takes tasks from the
broker but cannot write to the database is not counted as working.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from matcher.db import upsert_insert, utcnow
from matcher.models import WorkerHeartbeat

#: a worker not heard of for this long is forgotten (its row removed by another's beat)
FORGET_AFTER = timedelta(days=7)


def record_heartbeat(session: Session, hostname: str, now: datetime | None = None) -> None:
    """Note that worker ``hostname`` finished a task at ``now``; forget workers silent
    for a week (a host renamed, a container gone)."""
    now = now or utcnow()
    table = WorkerHeartbeat.__table__
    statement = upsert_insert(session, table).values(hostname=hostname[:255], seen_at=now)
    session.execute(
        statement.on_conflict_do_update(index_elements=["hostname"], set_={"seen_at": now})
    )
    session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.seen_at < now - FORGET_AFTER))


def last_heartbeat(connection: Connection | Session) -> datetime | None:
    """When a worker last finished a task, None when none ever did."""
    seen: datetime | None = connection.execute(select(func.max(WorkerHeartbeat.seen_at))).scalar()
    return seen
