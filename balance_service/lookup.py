"""Find a key's token and its owner in the gateway's tables: one SQL statement, one round trip.

The lookup is ``tokens LEFT JOIN users``, built here with SQLAlchemy Core from
the models (the schema's single source), compiled once per dialect and table
layout, and run on this worker's own connection (``direct_reads``: prepared
once per connection on PostgreSQL, no pool, no pre-ping), so a balance request
costs one database round trip. Nothing here writes to the database.
"""

from __future__ import annotations

from collections import namedtuple
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, and_, bindparam, inspect, select

from . import direct_reads
from .gateway import KeyRejected
from .models import Token, User, exact_string, live, or_default, soft_delete_columns


def lookup(key: str) -> tuple[Any, Any | None]:
    """Return the live token with this key and its live owner (``None`` if the owner is gone).

    Raises ``KeyRejected`` when no live token has this key. Both come back as
    named tuples with the models' attribute names (``token.remain_quota``):
    building mapped instances cost more CPU than the round trip, and nothing
    here needs a session-bound object.
    """
    reader = direct_reads.reader()
    stmt, token_attrs, user_attrs = _lookup_statement(*soft_delete_columns(reader.engine))
    row = reader.first_row(stmt, {"key": key})
    if row is None:
        raise KeyRejected("Invalid token")
    token_type, user_type = _row_types(token_attrs, user_attrs)
    split = len(token_attrs)
    token = token_type._make(row[:split])
    if row[split + user_attrs.index("id")] is None:  # the LEFT JOIN found no live owner
        return token, None
    return token, user_type._make(row[split:])


@lru_cache(maxsize=8)
def _row_types(token_attrs: tuple[str, ...], user_attrs: tuple[str, ...]) -> tuple[type, type]:
    """Named tuples for a token and a user row, with the models' own ``repr`` (which never shows the key)."""
    types = []
    for model, attrs in ((Token, token_attrs), (User, user_attrs)):
        fields = namedtuple(f"{model.__name__}Fields", attrs)
        types.append(type(f"{model.__name__}Row", (fields,), {"__slots__": (), "__repr__": model.__repr__}))
    return types[0], types[1]


@lru_cache(maxsize=4)
def _lookup_statement(tokens_soft: bool, users_soft: bool) -> tuple[Select, tuple[str, ...], tuple[str, ...]]:
    """``tokens LEFT JOIN users`` for one table layout, with the attribute names of its columns in order.

    Soft-deleted rows are filtered in SQL and ``deleted_at`` is never selected:
    the gateways write it in formats that vary by driver and version. The key
    is compared exactly (case and all) on every backend, see ``exact_string``.
    A NULL in a column with a gateway default comes back as that default
    (``or_default``), so no caller ever sees a NULL quota, status or expiry.
    """
    parts = []
    for model in (Token, User):
        attrs = [a for a in inspect(model).column_attrs if a.key != "deleted_at"]
        parts.append((tuple(a.key for a in attrs), [or_default(a.columns[0]) for a in attrs]))
    (token_attrs, token_columns), (user_attrs, user_columns) = parts
    tokens, users = Token.__table__, User.__table__
    owner = and_(users.c.id == tokens.c.user_id, live(User, users_soft))
    stmt = (
        select(*token_columns, *user_columns)
        .select_from(tokens.outerjoin(users, owner))
        .where(tokens.c.key == exact_string(bindparam("key")), live(Token, tokens_soft))
    )
    return stmt.limit(1), token_attrs, user_attrs
