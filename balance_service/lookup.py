"""Find a key's token and its owner in the gateway's tables: one SQL statement, one round trip.

The lookup is ``tokens LEFT JOIN users`` so a balance request costs one
database round trip. Nothing here writes to the database.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Row, Select, and_, bindparam, inspect, select

from .extensions import db
from .gateway import KeyRejected
from .models import Token, User, exact_string, live, or_default, soft_delete_columns


def lookup(key: str) -> tuple[Token, User | None]:
    """Return the live token with this key and its live owner (``None`` if the owner is gone).

    Raises ``KeyRejected`` when no live token has this key. One SQL statement,
    built once per table layout. Both come back as detached model instances
    made from one Core row: building an ORM select and loading it through the
    session cost about a third of a balance request's CPU (bench/README.md),
    and nothing here needs a session-bound object.
    """
    stmt, token_attrs, user_attrs = _lookup_statement(*soft_delete_columns(db.engine))
    row = _first_row_without_transaction(stmt, {"key": key})
    if row is None:
        raise KeyRejected("Invalid token")
    token = Token(**dict(zip(token_attrs, row[: len(token_attrs)], strict=True)))
    user_fields = dict(zip(user_attrs, row[len(token_attrs) :], strict=True))
    if user_fields["id"] is None:  # the LEFT JOIN found no live owner
        return token, None
    return token, User(**user_fields)


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


def _first_row_without_transaction(stmt: Select, params: dict[str, Any]) -> Row | None:
    """Run one SELECT on a pooled connection of its own, with no transaction around it.

    Outside the session, no session transaction is set up and torn down for one
    read, and the connection goes back to the pool before the response is
    rendered. On PostgreSQL the connection runs in autocommit for the statement:
    psycopg2 would otherwise send ``BEGIN`` before it and the pool ``ROLLBACK``
    after it, two extra round trips for a read that is atomic anyway. The flag
    is client-side and is put back before the connection returns to the pool.
    """
    with db.engine.connect() as connection:
        driver = connection.connection.driver_connection
        if connection.dialect.driver != "psycopg2":
            return connection.execute(stmt, params).first()
        driver.autocommit = True
        try:
            return connection.execute(stmt, params).first()
        finally:
            if not driver.closed:
                driver.autocommit = False
