"""The tolerant timeline reader and the swimlane drawing."""

from __future__ import annotations

from racebench.reports.swimlanes import draw_swimlanes
from racebench.reports.timeline import read_timeline
from tests.reports.synthetic import interleaved_timeline

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_reads_the_harness_format() -> None:
    lanes = read_timeline(interleaved_timeline(locking=True), "interleaved x for_update")
    assert lanes.actors == ["client", "webhook"]
    assert [n.text for n in lanes.notes] == ["schedule: the documents' T0-T7"]
    assert len(lanes.waits) == 1
    wait = lanes.waits[0]
    assert (wait.actor, wait.start_ms, wait.end_ms) == ("webhook", 3.0, 44.2)
    assert wait.text == "Lock/transactionid, blocked by [4241]"
    assert lanes.marks[0].text == "sends POST /payments/verify"
    assert next(m for m in lanes.marks if m.label == "T0").text == "reads payment: status = pending"
    assert lanes.problems == []
    png = draw_swimlanes(lanes)
    assert png is not None and png.startswith(PNG_MAGIC)


def test_tolerates_synonyms_gaps_and_garbage() -> None:
    rows = [
        {"at_ms": 1, "lane": "client", "step": "read"},  # synonyms
        {"t_ms": "2.5", "who": "webhook", "event": "read"},  # a time as a string
        {"type": "lock_wait", "tx": "webhook", "start_ms": 3},  # a wait that never ended
        {"actor": "client", "what": "no time"},  # unplaceable
        "not a dict",  # garbage
        {"t_ms": 9, "actor": "client", "what": "commit", "kind": "answer"},
    ]
    lanes = read_timeline(rows, "odd")  # type: ignore[arg-type]
    assert [m.text for m in lanes.marks] == ["read", "read", "commit"]
    assert lanes.actors == ["client", "webhook"]
    assert lanes.waits[0].end_ms == 9.0  # it lasted at least until the last event seen
    assert lanes.skipped == 2
    assert "a lock wait of webhook has no end time" in lanes.problems
    assert draw_swimlanes(lanes) is not None


def test_nothing_to_draw() -> None:
    assert draw_swimlanes(read_timeline([], "empty")) is None
    assert draw_swimlanes(read_timeline([{"kind": "note"}], "junk")) is None
