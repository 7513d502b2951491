"""balance_alerts as of the first Alembic revision; adopts a table made by an earlier version.

Before Alembic, ``init-db`` created the table with ``create_all`` and later
versions added columns to it with ``ALTER TABLE``. So this revision, on a
database that has no version table yet:

- creates the table when there is none;
- adds what an earlier version's table lacks (the columns in
  ``ADDED_COLUMNS``, the indexes) and, when ``created_by_token_id`` is new,
  records each token-scoped alert's key as its creator (an account-scoped alert
  keeps no creator).

The columns are written out here, not taken from the model: a later change to
the model needs a revision of its own.

Revision ID: 0001
Revises:
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLE = "balance_alerts"
INDEXED = ("user_id", "token_id")


def _added_columns() -> list[sa.Column]:
    """The columns added after the table's first release, in the order they were added."""
    return [
        sa.Column("created_by_token_id", sa.Integer(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("days_left_tenths", sa.Integer(), nullable=True),
    ]


ADDED_COLUMNS = tuple(column.name for column in _added_columns())


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table(TABLE):
        op.create_table(
            TABLE,
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("user_id", sa.Integer(), nullable=False),
            sa.Column("token_id", sa.Integer(), nullable=True),
            sa.Column("threshold", sa.BigInteger(), nullable=False),
            sa.Column("webhook_url", sa.String(length=2048), nullable=False),
            sa.Column("secret", sa.String(length=64), nullable=False),
            sa.Column("state", sa.String(length=8), nullable=False),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("last_notified_at", sa.DateTime(), nullable=True),
            sa.Column("last_error", sa.Text(), nullable=True),
            *_added_columns(),
            sa.PrimaryKeyConstraint("id"),
        )
        for name in INDEXED:
            op.create_index(op.f(f"ix_{TABLE}_{name}"), TABLE, [name])
        return
    present = {column["name"] for column in inspector.get_columns(TABLE)}
    indexes = {index["name"] for index in inspector.get_indexes(TABLE)}
    for column in _added_columns():
        if column.name not in present:
            op.add_column(TABLE, column)
    for name in INDEXED:
        if op.f(f"ix_{TABLE}_{name}") not in indexes:
            op.create_index(op.f(f"ix_{TABLE}_{name}"), TABLE, [name])
    if "created_by_token_id" not in present:
        alerts = sa.table(TABLE, sa.column("token_id", sa.Integer()), sa.column("created_by_token_id", sa.Integer()))
        op.execute(
            alerts.update()
            .where(alerts.c.created_by_token_id.is_(None), alerts.c.token_id.is_not(None))
            .values(created_by_token_id=alerts.c.token_id)
        )


def downgrade() -> None:
    op.drop_index(op.f(f"ix_{TABLE}_token_id"), table_name=TABLE)
    op.drop_index(op.f(f"ix_{TABLE}_user_id"), table_name=TABLE)
    op.drop_table(TABLE)
