"""The demo's request history: 30 days of a gateway's ``logs`` rows, so a first run shows the usage page.

``flask demo`` (``balance-service demo``) calls :func:`seed_usage` only on a database it has just
filled itself (no users before it ran) and only when that database has no ``logs`` table yet: a
gateway's own tables are never written. The table is made from the one description the service
reads (``usage.source.logs``), and the rows are what one-api / new-api write for a charged request
(type 2) and a refund (type 6), with ``token_id`` and ``token_name`` set. They come from a seeded
random generator, so every demo database made on the same day holds the same history.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, inspect, update

from ..extensions import db
from .logs import SECONDS_PER_DAY
from .tables import LOG_CONSUME, LOG_REFUND, Token, User, logs

#: Days of history, ending with today (the page's default range).
DAYS = 30
#: The models, how often each is picked, and the quota range of one request (500000 quota = 1 USD).
MODELS = (
    ("gpt-4o-mini", 5, (2_000, 12_000)),
    ("gpt-4o", 3, (20_000, 80_000)),
    ("claude-3-5-sonnet", 2, (25_000, 90_000)),
    ("deepseek-chat", 3, (1_000, 6_000)),
)
#: Share of the account's requests made with the demo key (the rest with its second key).
KEY_SHARE = 0.35
#: Refunds (new-api's type 6) given back for a few of the requests.
REFUNDS = 4
SEED = 20


@dataclass(frozen=True)
class DemoKey:
    id: int
    name: str


def _rows(user_id: int, keys: tuple[DemoKey, DemoKey], now: datetime) -> list[dict]:
    """The history, oldest first; nothing after ``now``. Weekdays busier than weekends, spend slowly rising."""
    rng = random.Random(SEED)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    names, weights = [m[0] for m in MODELS], [m[1] for m in MODELS]
    ranges = {m[0]: m[2] for m in MODELS}
    rows: list[dict] = []
    for back in range(DAYS - 1, -1, -1):
        day = today - timedelta(days=back)
        busy = (3, 7) if day.weekday() >= 5 else (7, 14)
        count = rng.randint(*busy) + (DAYS - back) // 10
        for second in sorted(rng.randrange(SECONDS_PER_DAY) for _ in range(count)):
            model = rng.choices(names, weights)[0]
            key = keys[0] if rng.random() < KEY_SHARE else keys[1]
            quota = rng.randint(*ranges[model])
            created = int(day.timestamp()) + second
            if created <= int(now.timestamp()):
                rows.append(_row(user_id, key, created, LOG_CONSUME, model, quota))
    for charged in rng.sample(rows[:-10], REFUNDS):  # a failed request's quota given back a minute later
        refund = {**charged, "type": LOG_REFUND, "created_at": charged["created_at"] + 60}
        refund["quota"] = charged["quota"] // 2
        rows.append(refund)
    rows.sort(key=lambda r: r["created_at"])
    return rows


def _row(user_id: int, key: DemoKey, created: int, kind: int, model: str, quota: int) -> dict:
    return {
        "user_id": user_id,
        "created_at": created,
        "type": kind,
        "token_id": key.id,
        "token_name": key.name,
        "model_name": model,
        "quota": quota,
    }


def seed_usage(engine: Engine, user_id: int, keys: tuple[DemoKey, DemoKey], now: datetime | None = None) -> int:
    """Create ``logs`` and fill it; the account's and keys' ``used_quota`` become their net spend. Returns the rows.

    Returns 0 and writes nothing when the database already has a ``logs`` table.
    """
    if inspect(engine).has_table(logs.name):
        return 0
    rows = _rows(user_id, keys, now or datetime.now(UTC))
    if engine.dialect.name == "sqlite":  # a BIGINT primary key is not SQLite's rowid: it needs its values
        rows = [{"id": n, **row} for n, row in enumerate(rows, start=1)]
    logs.create(engine)
    with engine.begin() as connection:
        connection.execute(logs.insert(), rows)

    def spent(token_id: int | None = None) -> int:
        mine = [r for r in rows if token_id is None or r["token_id"] == token_id]
        return sum(r["quota"] if r["type"] == LOG_CONSUME else -r["quota"] for r in mine)

    db.session.execute(update(User).where(User.id == user_id).values(used_quota=spent()))
    for key in keys:
        db.session.execute(update(Token).where(Token.id == key.id).values(used_quota=spent(key.id)))
    db.session.commit()
    return len(rows)
