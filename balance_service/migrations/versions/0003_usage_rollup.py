"""usage_rollup and usage_rollup_state: usage figures summed once by log id (balance_service/usage/rollup.py).

Two tables of the service's own, in its main database: the buckets (per UTC
day, account, key, key name and model) and the one state row, made here with
watermark 0 (nothing rolled up: usage is read raw until ``rollup-usage`` runs).
On MySQL/MariaDB the names are their UTF-8 bytes (``VARBINARY``), so that keys
named ``work``, ``Work`` and ``work `` keep buckets of their own.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _name() -> sa.types.TypeEngine:
    return sa.Text().with_variant(mysql.VARBINARY(length=764), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "usage_rollup",
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("token_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("token_name", _name(), nullable=False),
        sa.Column("model_name", _name(), nullable=False),
        sa.Column("consumed", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "day", "token_id", "token_name", "model_name"),
    )
    op.create_index("ix_usage_rollup_token_id_day", "usage_rollup", ["token_id", "day"])
    state = op.create_table(
        "usage_rollup_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("seen_id", sa.BigInteger(), nullable=True),
        sa.Column("seen_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(state, [{"id": 1, "watermark": 0, "source": ""}])


def downgrade() -> None:
    op.drop_table("usage_rollup_state")
    op.drop_index("ix_usage_rollup_token_id_day", table_name="usage_rollup")
    op.drop_table("usage_rollup")
