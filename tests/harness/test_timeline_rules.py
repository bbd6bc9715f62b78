"""The ordering rules a true timeline keeps (ordering_errors), and a render that cuts nothing."""

from __future__ import annotations

from racebench.harness.timeline import ordering_errors, render
from racebench.results import LockWait, TimelineEntry, TimelineEvent


def _e(t: float, actor: str, what: str, kind: str = "arrive") -> TimelineEvent:
    return TimelineEvent.model_validate(
        {"t_ms": t, "actor": actor, "what": what, "kind": kind, "label": ""}
    )


def _wait(start: float, end: float, holders: list[str]) -> LockWait:
    return LockWait(
        actor="webhook",
        pid=2,
        start_ms=start,
        end_ms=end,
        wait_event="Lock/transactionid",
        query="SELECT ... FOR UPDATE",
        blocked_by=[1],
        holders=holders,
    )


def _true_order() -> list[TimelineEntry]:
    return [
        _e(0.0, "client", "sends POST /verify", "send"),
        _e(1.0, "webhook", "sends webhook payment.captured", "send"),
        _e(2.0, "client", "reads payment: status = pending"),
        _wait(3.0, 6.0, ["client"]),
        _e(5.0, "client", "COMMIT", "release"),
        _e(5.5, "client", "answers 200 captured", "answer"),
        _e(6.0, "webhook", "reads payment: status = captured; already captured, skipped"),
        _e(7.0, "webhook", "COMMIT", "release"),
        _e(8.0, "webhook", "answers 200 processed", "answer"),
    ]


def test_a_true_timeline_keeps_every_rule() -> None:
    assert ordering_errors(_true_order()) == []


def test_a_lock_granted_before_its_holder_committed_is_an_error() -> None:
    entries = _true_order()
    entries[3] = _wait(3.0, 4.0, ["client"])  # the last sample, not the grant
    assert ordering_errors(entries) == [
        "webhook got the lock at 4.0 ms, before its holder client committed at 5.0 ms"
    ]


def test_a_worker_known_only_by_its_pid_is_no_single_holder() -> None:
    """hundred_way over http: "worker 7" ran many transactions; the one that held the lock
    rolled back, a sibling committed later. That COMMIT is not the holder's."""
    entries = [
        _e(1.0, "webhook", "sends webhook payment.captured", "send"),
        _e(2.0, "worker 7", "COMMIT", "release"),
        _wait(3.0, 4.0, ["worker 7"]),
        _e(5.0, "worker 7", "COMMIT", "release"),
    ]
    assert ordering_errors(entries) == []
    named = [_e(0.5, "worker 7", "sends POST /verify", "send"), *entries]
    assert ordering_errors(named) == [
        "webhook got the lock at 4.0 ms, before its holder worker 7 committed at 5.0 ms"
    ]


def test_an_answer_before_its_commit_is_an_error() -> None:
    entries = _true_order()
    entries[5] = _e(4.5, "client", "answers 200 captured", "answer")
    assert ordering_errors(entries) == ["client: COMMIT at 5.0 ms after its answer at 4.5 ms"]


def test_an_event_before_its_request_was_sent_is_an_error() -> None:
    entries = [*_true_order(), _e(0.5, "webhook", "reads payment: status = pending")]
    errors = ordering_errors(entries)
    assert errors == [
        "webhook: 'reads payment: status = pending' before its request was sent at 1.0 ms"
    ]


def test_no_line_is_wider_than_the_console_and_nothing_is_cut() -> None:
    result = "RESULT: DOUBLE_CAPTURE x1 (" + ", ".join(f"field{i}={i}" for i in range(40)) + ")"
    entries = [
        *_true_order(),
        _e(9.0, "-", result, "note"),
        _e(4.0, "webhook", "on Lock/transactionid: UPDATE payments waits for client's " * 3),
    ]
    for width in (100, 160):
        text = render(entries, "interleaved x for_update (http)", width=width)
        assert max(len(line) for line in text.splitlines()) <= width
        flat = " ".join(text.split())
        assert "field39=39)" in flat
        assert "lock granted after 3.0 ms" in flat
        assert width == 100 or "lock granted after 3.0 ms (client committed)" in flat
        assert "blocked by client" in flat


def test_a_long_statement_ends_at_a_word_and_says_it_goes_on() -> None:
    query = "WITH payment AS ( UPDATE payments SET status = 'captured', razorpay_payment_id = $2 )"
    wait = _wait(3.0, 6.0, ["client"]).model_copy(update={"query": query})
    text = render([_e(0.0, "webhook", "sends webhook", "send"), wait], "t", width=200)
    line = next(line for line in text.splitlines() if "blocked by client" in line)
    statement = line.split("blocked by client: ", 1)[1]
    assert statement.endswith(" ...")
    assert query.startswith(statement.removesuffix(" ..."))
    assert query[len(statement) - 4] == " "  # the cut falls between words


def test_a_wait_whose_holder_rolled_back_ends_at_the_drawn_rollback() -> None:
    """serializable: the holder's transaction fails and rolls back; the waiter's wait ends at
    that ROLLBACK, and the grant says so."""
    entries = _true_order()
    entries[4] = _e(5.0, "client", "ROLLBACK", "release")
    assert ordering_errors(entries) == []
    assert "lock granted after 3.0 ms (client rolled back)" in render(entries, "t", width=200)
    late = [*entries[:4], _e(7.5, "client", "ROLLBACK", "release"), *entries[5:]]
    assert ordering_errors(late) == [
        "webhook got the lock at 6.0 ms, before its holder client rolled back at 7.5 ms"
    ]


def test_a_wait_that_ends_with_no_commit_or_rollback_drawn_is_an_error() -> None:
    entries = [e for e in _true_order() if not (e.actor == "client" and e.what == "COMMIT")]
    assert ordering_errors(entries) == [
        "webhook's lock wait ended at 6.0 ms with no COMMIT or ROLLBACK of its holder "
        "(client) drawn"
    ]


def test_a_step_drawn_inside_its_own_lock_wait_is_an_error() -> None:
    entries = [*_true_order(), _e(4.0, "webhook", "verified signature on arrival: valid")]
    assert ordering_errors(entries) == [
        "webhook: 'verified signature on arrival: valid' at 4.0 ms, inside its own lock wait "
        "(3.0 .. 6.0 ms)"
    ]
    still = [*_true_order(), _e(4.0, "webhook", "still blocked (the same wait)", "blocked")]
    assert ordering_errors(still) == []


def test_a_synthetic_commit_after_a_reported_one_is_an_error() -> None:
    entries = [
        *_true_order(),
        _e(8.5, "webhook", "returned (200 processed); its COMMIT was not reported", "release"),
    ]
    assert ordering_errors(entries) == [
        "webhook: 'returned (200 processed); its COMMIT was not reported' at 8.5 ms, after its "
        "COMMIT at 7.0 ms"
    ]
