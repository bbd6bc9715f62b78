"""The timeline reader (the typed entries of results.json) and the swimlane drawing."""

from __future__ import annotations

import struct

from matplotlib.backends.backend_agg import FigureCanvasAgg

from racebench.reports.swimlanes import _rows, _wrap, draw_swimlanes, swimlane_figure
from racebench.reports.timeline import read_timeline
from racebench.results import LockWait
from tests.reports.synthetic import event, interleaved_timeline

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_reads_the_harness_format() -> None:
    lanes = read_timeline(interleaved_timeline(locking=True), "interleaved x for_update")
    assert lanes.actors == ["client", "webhook"]
    assert [n.text for n in lanes.notes] == ["schedule: the write-up's T0-T7"]
    assert len(lanes.waits) == 1
    wait = lanes.waits[0]
    assert (wait.actor, wait.start_ms, wait.end_ms) == ("webhook", 3.0, 44.2)
    assert wait.text == "Lock/transactionid, blocked by pid 4241"  # no actor known: the pid
    assert lanes.marks[0].text == "sends POST /payments/verify"
    assert next(m for m in lanes.marks if m.label == "T0").text == "reads payment: status = pending"
    png = draw_swimlanes(lanes)
    assert png is not None and png.startswith(PNG_MAGIC)


def test_lanes_follow_first_appearance_and_waits_come_in_time_order() -> None:
    entries = [
        event(9.0, "client", "commit", "answer"),
        LockWait(actor="webhook", pid=2, start_ms=5.0, end_ms=7.0, wait_event="Lock/advisory",
                 query="SELECT pg_advisory_xact_lock($1)"),
        event(1.0, "webhook", "read", "arrive"),
        LockWait(actor="client", pid=1, start_ms=2.0, end_ms=1.0, wait_event="", query="q"),
    ]  # fmt: skip
    lanes = read_timeline(entries, "odd")
    assert [m.text for m in lanes.marks] == ["read", "commit"]
    assert lanes.actors == ["webhook", "client"]
    assert [(w.actor, w.start_ms, w.end_ms, w.text) for w in lanes.waits] == [
        ("client", 2.0, 2.0, "lock"),  # an end before its start is drawn as an instant
        ("webhook", 5.0, 7.0, "Lock/advisory"),
    ]
    assert draw_swimlanes(lanes) is not None


def test_nothing_to_draw() -> None:
    assert draw_swimlanes(read_timeline([], "empty")) is None
    notes_only = [event(0.0, "-", "schedule: none", "note")]
    assert draw_swimlanes(read_timeline(notes_only, "notes only")) is None


def test_a_wait_names_the_actor_that_holds_the_lock_and_long_text_is_wrapped_not_cut() -> None:
    long = "reads payment: status = captured; already captured, skipped " * 3
    entries = [
        event(1.0, "client", "COMMIT", "release"),
        LockWait(actor="webhook", pid=2, start_ms=0.5, end_ms=2.0, wait_event="Lock/transactionid",
                 query="SELECT ... FOR UPDATE", blocked_by=[1], holders=["client"]),
        event(2.0, "webhook", long, "arrive"),
    ]  # fmt: skip
    lanes = read_timeline(entries, "named")
    assert lanes.waits[0].text == "Lock/transactionid, blocked by client"
    assert draw_swimlanes(lanes) is not None
    rows = _rows(lanes, lanes.actors)
    # The grant is drawn before the step it allowed, both after the holder's COMMIT.
    assert [r.kind for r in rows] == ["lock_wait", "release", "lock_granted", "arrive"]
    assert _wrap(long).replace("\n", " ") == long.strip()


RESULT = (
    "RESULT: DOUBLE_CAPTURE x1 (payment_id=1, captures=2, sources=['client', "
    "'webhook:evt_5IlmlA7pQcHrC0'], invoice_id=1, amount=100000, currency=INR); "
    "DUPLICATE_ALLOCATION x1 (payment_id=1, allocations=2, allocated=200000, invoice_id=1, "
    "amount=100000, currency=INR); INVOICE_DRIFT x1 (invoice_id=1, amount_paid=100000, "
    "allocated=200000, status=paid, currency=INR)"
)


def test_no_text_is_cut_at_the_image_edge() -> None:
    """interleaved x none's RESULT note ran past the right edge of the 1441 px image. Every
    text drawn is measured as the PNG renders it, and lies inside the image."""
    entries = [*interleaved_timeline(locking=False), event(60.0, "-", RESULT, "note")]
    entries.append(event(61.0, "webhook", "x" * 200, "arrive"))  # one unbreakable word
    lanes = read_timeline(entries, "interleaved x none (in_process, verdict caught)")
    figure = swimlane_figure(lanes)
    assert figure is not None
    renderer = FigureCanvasAgg(figure).get_renderer()
    image = figure.bbox
    texts = [t for t in figure.axes[0].texts if t.get_text()]
    assert any(t.get_text().startswith("RESULT") for t in texts)
    for text in texts:
        box = text.get_window_extent(renderer)
        assert image.x0 <= box.x0 and box.x1 <= image.x1, (text.get_text()[:40], box, image)
        assert image.y0 <= box.y0 and box.y1 <= image.y1, (text.get_text()[:40], box, image)
    png = draw_swimlanes(lanes)
    assert png is not None
    width, _ = struct.unpack(">II", png[16:24])  # the PNG's IHDR: what a browser shows
    assert abs(width - image.width) <= 1
