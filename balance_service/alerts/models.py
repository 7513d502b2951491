"""``balance_alerts``: a table of the service's own, next to (never inside) the gateway's tables."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db

STATE_ABOVE, STATE_BELOW = "above", "below"
SCOPE_ACCOUNT, SCOPE_TOKEN = "account", "token"
#: Where an alert sends: a signed JSON POST, an Apprise URL (chat, push), or an e-mail through ALERT_SMTP_URL.
CHANNEL_WEBHOOK, CHANNEL_NOTIFY, CHANNEL_EMAIL = "webhook", "notify", "email"
CHANNELS = (CHANNEL_WEBHOOK, CHANNEL_NOTIFY, CHANNEL_EMAIL)
#: The languages of the messages people read; the first is the default.
LANGUAGES = ("en", "zh-CN")


def utcnow() -> datetime:
    """Naive UTC, the way the gateway stores its own timestamps (SQLite keeps no time zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


def days_of(tenths: int | None) -> Decimal | None:
    """A forecast alert's ``days_left`` from its stored ``days_left_tenths`` (None: not a forecast alert)."""
    return None if tenths is None else Decimal(tenths) / 10


class BalanceAlert(db.Model):
    """One webhook for one balance: the account's when ``token_id`` is null, that key's otherwise.

    ``state`` remembers which side of the threshold the balance was on when last
    checked, so a crossing is notified once; ``above`` also means "armed".
    There is no foreign key, like between the gateway's own tables.

    ``created_by_token_id`` is the key that created the alert: only that key
    lists and deletes it (null for alerts stored before the column existed).
    Once the gateway deletes that key the alert never notifies again and any
    key of the account may list and delete it; while the key is disabled the
    alert is paused (``checker._creator_hold``, ``store._managed_by``).
    ``failures`` counts failed deliveries in a row and ``next_attempt_at``
    (naive UTC) holds a failing alert back until then. The table is created
    and changed by Alembic revisions only (``balance_service/migrations``): a
    change here needs a new revision.

    A forecast alert has ``days_left_tenths`` set (its ``days_left`` in tenths
    of a day) and watches the forecast's days left instead of the balance; its
    ``threshold`` is stored as 0 and unused (the column predates forecast
    alerts and is NOT NULL in existing tables).

    ``channel`` says where it sends: ``webhook`` to ``webhook_url``; ``notify``
    to the Apprise URL in ``target``; ``email`` to the address in ``target``
    through the operator's ALERT_SMTP_URL (``webhook_url`` is null for both).
    ``lang`` is the language of the messages people read; ``last_test_at``
    (naive UTC) is when the test button last sent, for its once-a-minute limit.
    """

    __tablename__ = "balance_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    token_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    threshold: Mapped[int] = mapped_column(BigInteger)
    webhook_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    # The HMAC key; it has to be readable to sign, so it is stored as issued.
    secret: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(8), default=STATE_ABOVE)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_notified_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by_token_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    days_left_tenths: Mapped[int | None] = mapped_column(Integer, nullable=True)
    channel: Mapped[str] = mapped_column(String(8), default=CHANNEL_WEBHOOK, server_default=CHANNEL_WEBHOOK)
    # The Apprise URL (its tokens included) or the e-mail address; only ever shown masked.
    target: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    lang: Mapped[str] = mapped_column(String(8), default=LANGUAGES[0], server_default=LANGUAGES[0])
    last_test_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    @property
    def scope(self) -> str:
        return SCOPE_ACCOUNT if self.token_id is None else SCOPE_TOKEN

    @property
    def is_forecast(self) -> bool:
        return self.days_left_tenths is not None

    def __repr__(self) -> str:
        # Never the secret, the URL or the target (they may carry a receiver's token).
        return f"<BalanceAlert {self.id} of user {self.user_id} {self.scope}>"
