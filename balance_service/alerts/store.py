"""Storing balance alerts: insert within the per-account cap, list and delete a key's own alerts.

An alert belongs to the key that created it (``created_by_token_id``): only
that key lists and deletes it, since its webhook URL often carries the
receiver's secret. The cap still counts the whole account. Alerts stored
before the creator was recorded (null), and alerts whose creator the gateway
has deleted (no row, or ``deleted_at`` set), are visible to every key of the
account, which can delete them; the blueprint leaves out their URL. A disabled
creator's alerts stay its own: the gateway may enable the key again.

No HTTP here; the blueprint (``blueprints/alerts.py``) validates requests and
turns the outcomes into answers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, text, update

from ..extensions import db
from ..gateway.keys import is_live_key
from ..migrations import require_current
from .models import BalanceAlert

#: INTEGER ids; a larger id cannot exist and would be a database error on PostgreSQL.
MAX_ID = 2**31 - 1

#: First key of the PostgreSQL advisory lock that serializes alert creation per account ("bal\x01").
_CREATE_LOCK_CLASS = 0x62616C01
#: MySQL/MariaDB refuse lock names longer than this.
_MAX_LOCK_NAME = 64
#: Seconds a creation waits for another one of the same account on MySQL/MariaDB.
_LOCK_WAIT = 10


class StoreBusy(Exception):
    """Another creation for the same account held its lock for too long; the caller may retry."""


#: Alerts one account may have (an alert costs a webhook call per crossing; a cap keeps one key from flooding).
MAX_ALERTS_PER_USER = 20


def lock_name(database: str, user_id: int) -> str:
    """The MySQL/MariaDB ``GET_LOCK`` name for creating alerts of one account in one database.

    Named locks are global to the server, not per database: without the
    database name, two services (or a test and a service) on one server would
    make each other's accounts wait. A database name too long for the 64
    characters a lock name may have is replaced by a digest of it.
    """
    name = f"balance_alerts.create.{database}.{user_id}"
    if len(name) > _MAX_LOCK_NAME:
        name = f"balance_alerts.create.{hashlib.sha256(database.encode()).hexdigest()[:24]}.{user_id}"
    return name


@contextmanager
def account_lock(user_id: int) -> Iterator[None]:
    """MySQL/MariaDB: hold ``GET_LOCK`` for the account on a connection of its own.

    Named locks belong to a connection, not a transaction, so the lock is
    taken and released on a separate pooled connection that lives exactly as
    long as the session's insert-and-count transaction.
    """
    name = lock_name(db.engine.url.database or "", user_id)
    with db.engine.connect() as connection:
        if connection.execute(text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": _LOCK_WAIT}).scalar() != 1:
            raise StoreBusy(name)
        try:
            yield
        finally:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})


def table_ready() -> None:
    """``migrations.NotMigrated`` unless ``init-db`` brought the table to this version's revision (no DDL here)."""
    require_current(db.engine)


def count_alerts(user_id: int) -> int:
    stmt = db.select(func.count()).select_from(BalanceAlert).where(BalanceAlert.user_id == user_id)
    return db.session.execute(stmt).scalar_one()


def add_within_cap(alert: BalanceAlert, limit: int) -> bool:
    """Insert and count in one transaction; keep the row only if the account is still within ``limit``.

    Counting after the insert makes concurrent creations of one account see
    each other once they take turns: on PostgreSQL a transaction-scoped
    advisory lock on the account (released at commit or rollback), on
    MySQL/MariaDB a named lock held around the transaction (``StoreBusy`` if
    it cannot be had), and SQLite has one writer at a time.
    """
    dialect = db.session.get_bind().dialect.name
    lock = account_lock(alert.user_id) if dialect in ("mysql", "mariadb") else nullcontext()
    with lock:
        if dialect == "postgresql":
            db.session.execute(db.select(func.pg_advisory_xact_lock(_CREATE_LOCK_CLASS, alert.user_id)))
        db.session.add(alert)
        db.session.flush()
        if count_alerts(alert.user_id) > limit:
            db.session.rollback()
            return False
        db.session.commit()
    return True


def _creator_deleted() -> ColumnElement[bool]:
    """The alert's creating key is no longer a live key of its account (as the checker's creator join sees it)."""
    return ~is_live_key(BalanceAlert.created_by_token_id, BalanceAlert.user_id)


def _managed_by(user_id: int, token_id: int) -> ColumnElement[bool]:
    """The alerts a key may list and delete: its own, and its account's alerts with no recorded or live creator."""
    return and_(
        BalanceAlert.user_id == user_id,
        or_(
            BalanceAlert.created_by_token_id == token_id,
            BalanceAlert.created_by_token_id.is_(None),
            _creator_deleted(),
        ),
    )


def alerts_of(user_id: int, token_id: int) -> list[BalanceAlert]:
    """The alerts the key ``token_id`` of account ``user_id`` may see, oldest first."""
    stmt = db.select(BalanceAlert).where(_managed_by(user_id, token_id)).order_by(BalanceAlert.id)
    return list(db.session.execute(stmt).scalars().all())


def delete_alert(alert_id: int, user_id: int, token_id: int) -> bool:
    """Delete one of the key's alerts; False when it may not see an alert with that id."""
    if alert_id > MAX_ID:
        return False
    stmt = delete(BalanceAlert).where(BalanceAlert.id == alert_id, _managed_by(user_id, token_id))
    deleted = db.session.execute(stmt).rowcount
    db.session.commit()
    return bool(deleted)


def alert_of(alert_id: int, user_id: int, token_id: int) -> BalanceAlert | None:
    """One alert the key may manage (as ``alerts_of`` lists them), or None."""
    if alert_id > MAX_ID:
        return None
    stmt = db.select(BalanceAlert).where(BalanceAlert.id == alert_id, _managed_by(user_id, token_id))
    return db.session.execute(stmt).scalar_one_or_none()


def claim_test(alert_id: int, now: datetime, interval: int) -> datetime | None:
    """Record a test of the alert at ``now`` unless the last one was less than ``interval`` seconds before.

    One conditional UPDATE, so two workers (or two requests at once) cannot
    both send: None when this call may send, else the time of the last test.
    """
    result = db.session.execute(
        update(BalanceAlert)
        .where(
            BalanceAlert.id == alert_id,
            or_(BalanceAlert.last_test_at.is_(None), BalanceAlert.last_test_at <= now - timedelta(seconds=interval)),
        )
        .values(last_test_at=now)
    )
    db.session.commit()
    if result.rowcount == 1:
        return None
    last = db.session.execute(select(BalanceAlert.last_test_at).where(BalanceAlert.id == alert_id)).scalar()
    db.session.commit()
    return last or now
