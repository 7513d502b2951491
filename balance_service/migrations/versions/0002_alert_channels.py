"""Alert channels: Apprise notify URLs and e-mail next to webhooks, the message language, the test button's time.

Adds ``channel`` (``webhook`` for every existing row), ``target`` (the notify
URL or e-mail address), ``lang`` (``en`` for existing rows), ``last_test_at``,
and lets ``webhook_url`` be null (an alert of another channel has none).
SQLite cannot drop a NOT NULL in place: there the batch operation copies the
table into a new one, rows and indexes kept; PostgreSQL and MariaDB alter the
column. Types are written out here, not taken from the model.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLE = "balance_alerts"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("channel", sa.String(length=8), nullable=False, server_default="webhook"))
    op.add_column(TABLE, sa.Column("target", sa.String(length=2048), nullable=True))
    op.add_column(TABLE, sa.Column("lang", sa.String(length=8), nullable=False, server_default="en"))
    op.add_column(TABLE, sa.Column("last_test_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table(TABLE) as batch:
        batch.alter_column("webhook_url", existing_type=sa.String(length=2048), nullable=True)


def downgrade() -> None:
    # Alerts of the new channels have no webhook to fall back to: they go.
    op.execute(sa.text(f"DELETE FROM {TABLE} WHERE channel <> 'webhook'"))
    with op.batch_alter_table(TABLE) as batch:
        batch.alter_column("webhook_url", existing_type=sa.String(length=2048), nullable=False)
        batch.drop_column("last_test_at")
        batch.drop_column("lang")
        batch.drop_column("target")
        batch.drop_column("channel")
