"""Usage figures without re-adding closed days: log rows summed once, by log id, into a table of the service's own.

``usage_rollup`` holds, per UTC day, account, key (``token_id``; 0 on one-api),
key name and model, the quota consumed, the quota refunded and the consume
rows (requests) of every log row whose ``id`` is at most the **watermark**
kept in ``usage_rollup_state``. ``flask --app wsgi rollup-usage`` moves the
watermark forward in batches of ids (``roll_up``); each batch adds its rows'
sums to their day's bucket, whatever that day is, and moves the watermark in
the same transaction. So a late row (a refund of yesterday's request, a write
that arrived late) has a new id like any other and lands in its closed day at
the next run; nothing is ever summed twice or skipped.

A usage request (``RolledUpLogSource``) reads the buckets of its range and
the raw log rows with ``id`` above the watermark, of any day in the range, and
adds them: exact at any moment, with the raw part as small as the time since
the last run. The watermark and the buckets are read in **one** statement, so
a roll-up committing meanwhile cannot make a request count a row twice; the
raw rows are read after it, and the roll-up never removes one. Until the
command has run (watermark 0), or while the table is missing (a database not
migrated yet), everything is read raw, as before.

Why ids and not days: a roll-up of closed days filled once a day would miss
late rows; ids are the order in which the gateway wrote rows. But ids are
handed out before the row is committed, so a row with a smaller id can become
visible after a larger one. The command therefore only rolls up to an id it
saw at least ``SETTLE_SECONDS`` before (``seen_id``/``seen_at``): any gateway
insert with a smaller id has committed by then (a gateway writes a log row in a
transaction of its own that lasts milliseconds).

Logs in ClickHouse are not rolled up: ids are not unique there (new-api writes
0) and ClickHouse sums a range from its sorted parts fast enough
(docs/usage.md).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import BigInteger, Connection, Dialect, Engine, Index, Integer, String, Text, and_, func, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from ..extensions import db
from ..gateway.logs import EPOCH, Scope, SqlLogSource, UsageRow, as_text, scope_rows, usage_rows
from ..gateway.tables import columns
from ..migrations import INIT_DB, NotMigrated

#: Log ids summed per transaction: a batch is one short read of the primary key's range and one upsert.
BATCH_IDS = 50_000
#: Batches one run does at most (then the next run goes on): 5,000,000 ids.
MAX_BATCHES = 100
#: Seconds a log id must have been seen before it is rolled up (see the module's docstring).
SETTLE_SECONDS = 60
#: The one row of ``usage_rollup_state``.
STATE_ID = 1


class ExactName(TypeDecorator):
    """A key or model name kept byte for byte: text elsewhere, its UTF-8 bytes (``VARBINARY``) on MySQL/MariaDB.

    Their string collations, ``utf8mb4_bin`` included, compare ``work`` and
    ``work `` as equal (PAD SPACE), so a primary key of names would merge the
    buckets of keys one-api tells apart; bytes compare exactly on every server.
    Unbounded elsewhere, as the gateways' ``text`` columns are there; the
    gateways' MySQL columns are ``varchar(191)``, at most 764 bytes.
    """

    impl = Text()
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.VARBINARY(764))  # 191 characters of up to 4 bytes
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | bytes | None:
        if value is not None and dialect.name in ("mysql", "mariadb"):
            return value.encode("utf-8")
        return value

    def process_result_value(self, value: str | bytes | None, dialect: Dialect) -> str | None:
        return None if value is None else as_text(value)


class UsageRollup(db.Model):
    """Sums of the log rows up to the watermark, per UTC day (days since 1970-01-01), account, key and model.

    ``token_id`` is 0 where the gateway logs none (one-api) and NULL names
    are stored as ``''``. Made by an Alembic revision only (a change here needs
    a new one).
    """

    __tablename__ = "usage_rollup"
    __table_args__ = (Index("ix_usage_rollup_token_id_day", "token_id", "day"),)

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    day: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    token_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    token_name: Mapped[str] = mapped_column(ExactName, primary_key=True)
    model_name: Mapped[str] = mapped_column(ExactName, primary_key=True)
    consumed: Mapped[int] = mapped_column(BigInteger)
    refunded: Mapped[int] = mapped_column(BigInteger)
    requests: Mapped[int] = mapped_column(BigInteger)


class RollupState(db.Model):
    """How far the roll-up got: one row (``id`` 1), made by the revision with watermark 0 (nothing rolled up).

    ``source`` names the log database the ids belong to (a hash of its URL
    without the password); a request finding another one reads everything raw.
    ``seen_id`` is the largest log id seen at ``seen_at`` (Unix seconds),
    rolled up once it has settled.
    """

    __tablename__ = "usage_rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    watermark: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(64))
    seen_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    seen_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


_rollup = UsageRollup.__table__
_state = RollupState.__table__


def source_id(logs_engine: Engine) -> str:
    """Which log database the ids belong to: a hash of its URL without the password."""
    return hashlib.sha256(logs_engine.url.render_as_string(hide_password=True).encode()).hexdigest()[:16]


def _day_number(day: date) -> int:
    return (day - EPOCH).days


# --- reading -------------------------------------------------------------------------------------------------------


class RolledUpLogSource:
    """The ``LogSource`` for SQL logs: the roll-up's buckets plus the raw rows above its watermark.

    ``main`` is the service's database (where ``usage_rollup`` lives), ``raw``
    the gateway's logs (the same database or ``LOG_DATABASE_URL``).
    """

    def __init__(self, raw: SqlLogSource, main: Engine) -> None:
        self.raw = raw
        self.main = main

    def has_logs(self) -> bool:
        return self.raw.has_logs()

    def _buckets(self, scope: Scope, start: date, end: date, by_day: bool) -> tuple[int, list[tuple]]:
        """The watermark and the buckets' sums (per day and model, or in all), read in one statement.

        0 and nothing when there is no roll-up to use: no table (not migrated), never run, or other logs.
        """
        if columns(self.main, _rollup.name) is None:
            return 0, []
        r, s = _rollup.c, _state.c
        keys = [r.day, r.model_name] if by_day else []
        who = scope_rows(r, scope, self.raw.has_token_id())
        on = and_(who, r.day >= _day_number(start), r.day < _day_number(end))
        stmt = (
            select(s.watermark, s.source, *keys, func.sum(r.consumed - r.refunded), func.sum(r.requests))
            .select_from(_state.outerjoin(_rollup, on))
            .where(s.id == STATE_ID)
            .group_by(s.watermark, s.source, *keys)
        )
        with self.main.connect() as connection:
            found = connection.execute(stmt).all()
        if not found or not found[0][0] or found[0][1] != source_id(self.raw.engine):
            return 0, []
        return int(found[0][0]), [tuple(row[2:]) for row in found]

    def daily_usage(self, scope: Scope, start: date, end: date) -> list[UsageRow]:
        watermark, buckets = self._buckets(scope, start, end, by_day=True)
        rolled = usage_rows(row for row in buckets if row[0] is not None)
        return merge(rolled, self.raw.daily_usage(scope, start, end, after_id=watermark))

    def net_spend(self, scope: Scope, start: date, end: date) -> int:
        watermark, buckets = self._buckets(scope, start, end, by_day=False)
        rolled = sum(int(row[0] or 0) for row in buckets)
        return rolled + self.raw.net_spend(scope, start, end, after_id=watermark)


def merge(*parts: Iterable[UsageRow]) -> list[UsageRow]:
    """Rows of the same day and model added up."""
    sums: dict[tuple[date, str], list[int]] = {}
    for part in parts:
        for row in part:
            bucket = sums.setdefault((row.day, row.model), [0, 0])
            bucket[0] += row.net_quota
            bucket[1] += row.requests
    return [UsageRow(day, model, net, requests) for (day, model), (net, requests) in sums.items()]


# --- writing -------------------------------------------------------------------------------------------------------


class LogsWentBack(Exception):
    """The logs' largest id is below the watermark: another table, or one emptied; ``--rebuild`` starts over."""


@dataclass
class RollupRun:
    """What one ``roll_up`` did: from which watermark to which, in how many batches; what is still waiting."""

    before: int
    after: int
    batches: int
    seen_id: int | None
    settles_in: float

    def __str__(self) -> str:
        moved = (
            f"rolled up log ids {self.before + 1}-{self.after} in {self.batches} batch(es)"
            if self.after > self.before
            else f"nothing new to roll up (at log id {self.after})"
        )
        if self.seen_id is not None and self.seen_id > self.after:
            moved += f"; ids up to {self.seen_id} follow once settled (in {max(self.settles_in, 0):.0f} s)"
        return moved


def _locked_state(connection: Connection) -> Any:
    """The state row, locked until the transaction ends: a second run waits, then sees the first's watermark."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite's one write lock, taken before reading
        return connection.execute(select(_state).where(_state.c.id == STATE_ID)).one_or_none()
    return connection.execute(select(_state).where(_state.c.id == STATE_ID).with_for_update()).one_or_none()


def _upsert(connection: Connection, rows: list[dict[str, int | str]]) -> None:
    """Add the rows' sums to their buckets (insert the bucket when new): one ``executemany``, which SQLAlchemy
    sends as multi-row statements."""
    if not rows:
        return
    sums = ("consumed", "refunded", "requests")
    if connection.dialect.name in ("mysql", "mariadb"):
        stmt = mysql.insert(_rollup)
        stmt = stmt.on_duplicate_key_update({name: _rollup.c[name] + stmt.inserted[name] for name in sums})
    else:
        stmt = (postgresql if connection.dialect.name == "postgresql" else sqlite).insert(_rollup)
        stmt = stmt.on_conflict_do_update(
            index_elements=[c.name for c in _rollup.primary_key.columns],
            set_={name: _rollup.c[name] + stmt.excluded[name] for name in sums},
        )
    connection.execute(stmt, rows)


def _folded(rows: Iterable[tuple]) -> list[dict[str, int | str]]:
    """The log batch's groups as bucket rows, NULLs folded (a NULL name is ``''``, a NULL id 0) and merged."""
    buckets: dict[tuple, list[int]] = {}
    for day, user_id, token_id, token_name, model_name, consumed, refunded, requests in rows:
        key = (int(day), int(user_id or 0), int(token_id or 0), as_text(token_name), as_text(model_name))
        bucket = buckets.setdefault(key, [0, 0, 0])
        bucket[0] += int(consumed or 0)
        bucket[1] += int(refunded or 0)
        bucket[2] += int(requests or 0)
    names = ("day", "user_id", "token_id", "token_name", "model_name")
    return [
        {**dict(zip(names, key, strict=True)), "consumed": c, "refunded": r, "requests": n}
        for key, (c, r, n) in buckets.items()
    ]


def roll_up(
    main: Engine,
    raw: SqlLogSource,
    batch_ids: int = BATCH_IDS,
    max_batches: int = MAX_BATCHES,
    settle: float = SETTLE_SECONDS,
    clock: Callable[[], float] = time.time,
) -> RollupRun:
    """Sum the settled log rows above the watermark into ``usage_rollup``, ``batch_ids`` ids per transaction.

    Each batch locks the state row, reads its id range from the logs, adds
    the sums and moves the watermark, and commits: an interrupted run loses
    at most its current batch, which the next run does again; two runs at once
    take turns. Raises ``LogsWentBack`` when the logs' largest id is below the
    watermark (the logs were replaced: ``rebuild`` first).
    """
    source = source_id(raw.engine)
    before = after = None
    batches = 0
    seen_id: int | None = None
    settles_in = 0.0
    while True:
        with main.connect() as connection, connection.begin():
            state = _locked_state(connection)
            if state is None:
                raise NotMigrated(f"usage_rollup_state has no row; run `{INIT_DB}`")
            watermark, seen_id, seen_at = int(state.watermark), state.seen_id, state.seen_at
            if state.source != source:
                if watermark:  # buckets of other logs: never add these ids to them
                    raise LogsWentBack("the roll-up holds another log database's rows; run rollup-usage --rebuild")
                # And forget how far the other logs went: their ids say nothing about these.
                update = (
                    _state.update().where(_state.c.id == STATE_ID).values(source=source, seen_id=None, seen_at=None)
                )
                connection.execute(update)
                seen_id = seen_at = None
            if before is None:
                before = watermark
            now = clock()
            if seen_id is None or seen_id <= watermark:  # nothing waiting: note how far the logs go now
                last = raw.last_id()
                if last < watermark:
                    raise LogsWentBack(
                        f"the logs' largest id ({last}) is below the roll-up's ({watermark}); "
                        "run rollup-usage --rebuild"
                    )
                seen_id, seen_at = last, int(now)
                connection.execute(
                    _state.update().where(_state.c.id == STATE_ID).values(seen_id=seen_id, seen_at=seen_at)
                )
            settles_in = (seen_at or 0) + settle - now
            if settles_in > 0 or seen_id <= watermark or batches >= max_batches:
                after = watermark
                break
            upto = min(seen_id, watermark + batch_ids)
            _upsert(connection, _folded(raw.rollup_rows(watermark, upto)))
            connection.execute(_state.update().where(_state.c.id == STATE_ID).values(watermark=upto))
            batches += 1
    return RollupRun(before or 0, after, batches, seen_id, settles_in)


def rebuild(main: Engine, raw: SqlLogSource) -> None:
    """Forget every bucket and start over at watermark 0 for these logs (requests read raw until the next run)."""
    with main.connect() as connection, connection.begin():
        _locked_state(connection)
        connection.execute(_rollup.delete())
        connection.execute(
            _state.update()
            .where(_state.c.id == STATE_ID)
            .values(watermark=0, source=source_id(raw.engine), seen_id=None, seen_at=None)
        )
