"""Keys and accounts in the gateway's tables: the key lookup, and joins of other tables onto them.

The lookup is one statement, ``tokens LEFT JOIN users``, built from the models
(the schema's single source) and run by ``direct_reads``, so a balance request
costs one database round trip. ``join_figures`` and ``is_live_key`` let the
alerts (their own table) reach the same rows. Nothing here writes to the database.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, and_, bindparam, exists, select
from sqlalchemy.orm import Bundle, aliased

from .._internal import direct_reads
from ..extensions import db
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
    """The live token with this key and its live owner (``None`` if gone); ``KeyRejected`` if there is no such token.

    Plain named tuples, not mapped instances: building those cost more CPU than
    the round trip.
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

    ``deleted_at`` is filtered in SQL, never selected: the gateways write it in
    formats that vary by driver and version.
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


def _live_key(model: Any, key_id: Any, account_id: Any, tokens_soft: bool) -> ColumnElement[bool]:
    return and_(model.id == key_id, model.user_id == account_id, live(model, tokens_soft))


def is_live_key(key_id: Any, account_id: Any) -> ColumnElement[bool]:
    """``EXISTS`` a key ``key_id`` of the account ``account_id`` that the gateway has not deleted."""
    return exists().where(_live_key(Token, key_id, account_id, soft_delete_columns(db.engine)[0]))


def join_figures(stmt: Select, account_id: Any, key_id: Any, creator_id: Any) -> Select:
    """``stmt`` joined to its live account and, outer, to two live keys of that account, with their figures.

    Adds the bundles ``user`` (the columns of ``UserRow``), ``token`` (of
    ``TokenRow``; ``id`` None when the key ``key_id`` is gone) and ``creator``
    (``id`` and ``status`` of the key ``creator_id``; ``id`` None when gone).
    """
    tokens_soft, users_soft = soft_delete_columns(db.engine)
    creator = aliased(Token, name="creator")
    return (
        stmt.add_columns(
            Bundle("user", *(or_default(getattr(User, name)) for name in UserRow._fields)),
            Bundle("token", *(or_default(getattr(Token, name)) for name in TokenRow._fields)),
            Bundle("creator", creator.id, or_default(creator.status)),
        )
        .join(User, and_(User.id == account_id, live(User, users_soft)))
        .outerjoin(Token, _live_key(Token, key_id, account_id, tokens_soft))
        .outerjoin(creator, _live_key(creator, creator_id, account_id, tokens_soft))
    )
