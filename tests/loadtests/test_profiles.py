"""Work items of each profile: which payments, which calls, signatures the service accepts."""

from __future__ import annotations

import json

from racebench.harness.gateway import hmac_sha256_hex
from racebench.loadtests.pool import Pool, order_id, razorpay_payment_id
from racebench.loadtests.profiles import (
    CONTENTION,
    HOT_ROW,
    HOT_ROWS,
    HOT_WINDOW_S,
    MIXED,
    MIXED_CAPTURE_EVENTS,
    PROFILES,
    VERIFY,
    WEBHOOK,
    ItemSource,
    pool_size_for,
)
from racebench.razorpay import DEFAULT_KEY_SECRET, DEFAULT_WEBHOOK_SECRET

POOL = Pool(first=101, size=1_000)


def test_processes_verify_distinct_payments_and_together_cover_the_pool() -> None:
    sources = [ItemSource(VERIFY, POOL, process_index=i, processes=3) for i in range(3)]

    ids = [s.next_item()[0].payment_id for _ in range(10) for s in sources]

    assert sorted(ids) == list(range(101, 131))
    assert all(s.wrapped == 0 for s in sources)


def test_a_verify_call_carries_a_real_checkout_signature() -> None:
    (call,) = ItemSource(VERIFY, POOL).next_item()
    body = json.loads(call.body)

    assert call.path == "/payments/verify"
    assert body["internal_payment_id"] == 101
    assert body["razorpay_order_id"] == order_id(101)
    message = f"{order_id(101)}|{razorpay_payment_id(101)}".encode()
    assert body["razorpay_signature"] == hmac_sha256_hex(DEFAULT_KEY_SECRET, message)


def test_contention_sends_the_verify_and_the_signed_webhook_of_one_payment_together() -> None:
    verify, webhook = ItemSource(CONTENTION, POOL).next_item()

    assert verify.kind == "verify" and webhook.kind == "webhook"
    assert verify.payment_id == webhook.payment_id == 101
    assert webhook.headers["X-Razorpay-Signature"] == hmac_sha256_hex(
        DEFAULT_WEBHOOK_SECRET, webhook.body
    )
    assert webhook.headers["X-Razorpay-Event-Id"] == webhook.event_id
    assert json.loads(webhook.body)["payload"]["payment"]["entity"]["order_id"] == order_id(101)


def test_a_pool_that_runs_out_reuses_payments_and_says_so() -> None:
    source = ItemSource(WEBHOOK, Pool(first=1, size=2))

    ids = [source.next_item()[0].payment_id for _ in range(5)]

    assert ids == [1, 2, 1, 2, 1]
    assert source.wrapped == 3


def test_hot_row_keeps_every_process_on_the_same_handful_and_moves_on() -> None:
    now = [50.0]
    sources = [
        ItemSource(HOT_ROW, POOL, process_index=i, processes=2, hot_epoch=50.0,
                   clock=lambda: now[0])
        for i in range(2)
    ]  # fmt: skip

    first = {s.next_item()[0].payment_id for s in sources for _ in range(200)}
    now[0] += HOT_WINDOW_S * 1.5
    second = {s.next_item()[0].payment_id for s in sources for _ in range(200)}

    assert first == set(range(101, 101 + HOT_ROWS))
    assert second == set(range(101 + HOT_ROWS, 101 + 2 * HOT_ROWS))
    assert pool_size_for(HOT_ROW, items=0, duration_s=1.0) == 11 * HOT_ROWS


def test_mixed_sends_every_capture_event_out_of_order_with_redeliveries() -> None:
    source = ItemSource(MIXED, POOL, seed=7)

    calls = [source.next_item()[0] for _ in range(400)]

    webhooks = [c for c in calls if c.kind == "webhook"]
    event_types = {json.loads(c.body)["event"] for c in webhooks}
    assert set(MIXED_CAPTURE_EVENTS) <= event_types
    redelivered = [c for c in webhooks if sum(o.event_id == c.event_id for o in webhooks) > 1]
    assert redelivered, "some events are delivered twice"
    assert all(
        o.body == c.body for c in redelivered for o in webhooks if o.event_id == c.event_id
    ), "a redelivery is the same bytes"
    first_seen: dict[tuple[int, str], int] = {}
    for position, call in enumerate(webhooks):
        first_seen.setdefault((call.payment_id, json.loads(call.body)["event"]), position)
    out_of_order = [
        pid
        for (pid, event), position in first_seen.items()
        if event == "payment.captured" and position < first_seen[(pid, "payment.authorized")]
    ]
    assert out_of_order, "some payments hear 'captured' before 'authorized'"


def test_every_profile_is_registered_by_its_name_and_sends_something() -> None:
    for name, profile in PROFILES.items():
        assert profile.name == name == str(profile)
        assert profile.summary
        item = ItemSource(profile, POOL, seed=1).next_item()
        assert item and len(item) == profile.requests_per_item
        assert profile.pool_size(items=100, duration_s=1.0) >= 1


def test_pool_sizes_follow_each_profile() -> None:
    assert VERIFY.pool_size(items=100, duration_s=1.0) == 101
    assert CONTENTION.pool_size(items=100, duration_s=1.0) == 101
    assert MIXED.pool_size(items=100, duration_s=1.0) == int(100 / MIXED.calls_per_payment) + 1
    assert pool_size_for(HOT_ROW, items=10**6, duration_s=0.35) == 4 * HOT_ROWS
