"""Find a key's token and its owner in the gateway's tables: one SQL statement, one round trip.

The lookup is ``tokens LEFT JOIN users``, built here with SQLAlchemy Core from
the models (the schema's single source), compiled once per dialect and table
layout, and run on this worker's own connection (``direct_reads``: prepared
once per connection on PostgreSQL, no pool, no pre-ping), so a balance request
costs one database round trip. Nothing here writes to the database.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from sqlalchemy import Select, and_, bindparam, select

from .. import direct_reads
from .rules import KeyRejected
from .tables import Token, User, exact_string, live, or_default, soft_delete_columns


class TokenRow(NamedTuple):
    """The columns of a key the service reads; never the key itself."""

    id: int
    user_id: int
    name: str
    status: int
    expired_time: int
    remain_quota: int
    used_quota: int
    unlimited_quota: bool

    def __repr__(self) -> str:
        return f"<Token {self.id} of user {self.user_id}>"


class UserRow(NamedTuple):
    """The columns of an account the service reads."""

    id: int
    role: int
    status: int
    quota: int
    used_quota: int

    def __repr__(self) -> str:
        return f"<User {self.id}>"


def lookup(key: str) -> tuple[TokenRow, UserRow | None]:
    """Return the live token with this key and its live owner (``None`` if the owner is gone).

    Raises ``KeyRejected`` when no live token has this key. Plain named tuples,
    not mapped instances: building those cost more CPU than the round trip, and
    nothing here needs a session-bound object.
    """
    reader = direct_reads.reader()
    row = reader.first_row(_lookup_statement(*soft_delete_columns(reader.engine)), {"key": key})
    if row is None:
        raise KeyRejected("Invalid token")
    split = len(TokenRow._fields)
    token = TokenRow._make(row[:split])
    if row[split] is None:  # the LEFT JOIN found no live owner (``users.id`` comes first)
        return token, None
    return token, UserRow._make(row[split:])


@lru_cache(maxsize=4)
def _lookup_statement(tokens_soft: bool, users_soft: bool) -> Select:
    """``tokens LEFT JOIN users`` for one table layout: the columns of ``TokenRow`` then ``UserRow``, in order.

    Soft-deleted rows are filtered in SQL and ``deleted_at`` is never selected:
    the gateways write it in formats that vary by driver and version. The key
    is compared exactly (case and all) on every backend, see ``exact_string``.
    A NULL in a column with a gateway default comes back as that default
    (``or_default``), so no caller ever sees a NULL quota, status or expiry.
    """
    pairs = ((Token, TokenRow), (User, UserRow))
    columns = [or_default(getattr(model, name)) for model, row in pairs for name in row._fields]
    tokens, users = Token.__table__, User.__table__
    owner = and_(users.c.id == tokens.c.user_id, live(User, users_soft))
    stmt = (
        select(*columns)
        .select_from(tokens.outerjoin(users, owner))
        .where(tokens.c.key == exact_string(bindparam("key")), live(Token, tokens_soft))
    )
    return stmt.limit(1)
