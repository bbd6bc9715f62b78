"""The shop's schema, as SQLAlchemy ORM models (its own names: nothing like racebench's)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Invoice(Base):
    __tablename__ = "shop_invoice"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    total_paise: Mapped[int] = mapped_column(BigInteger)
    paid_paise: Mapped[int] = mapped_column(BigInteger, default=0)
    # Set by a capture's reconciliation (SHOP_MODE=reconcile_*) when the paid total and the
    # captured payments disagree: a human looks at a disputed invoice before it is settled.
    disputed: Mapped[bool] = mapped_column(default=False, server_default="false")


class Payment(Base):
    __tablename__ = "shop_payment"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_ref: Mapped[str] = mapped_column(String(64))
    gateway_order_id: Mapped[str] = mapped_column(String(64), unique=True)
    gateway_payment_id: Mapped[str | None] = mapped_column(String(64))
    amount_paise: Mapped[int] = mapped_column(BigInteger)
    # created -> captured | failed
    status: Mapped[str] = mapped_column(String(16), default="created")
    capture_count: Mapped[int] = mapped_column(default=0)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("shop_invoice.id"))


class Receipt(Base):
    """One per capture: the customer's email and the ledger entry hang off it."""

    __tablename__ = "shop_receipt"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("shop_payment.id"), index=True)
    amount_paise: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16))  # checkout | webhook
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookEvent(Base):
    """Razorpay's X-Razorpay-Event-Id, claimed in the transaction that acts on the event (in
    its own transaction before it, with SHOP_MODE=early_claim)."""

    __tablename__ = "shop_webhook_event"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event: Mapped[str] = mapped_column(String(32))


class WebhookLog(Base):
    """Every webhook delivery as it came, written in a transaction of its own before anything
    acts on it (for support: "did Razorpay send it?"). Outside the capture transaction."""

    __tablename__ = "shop_webhook_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
