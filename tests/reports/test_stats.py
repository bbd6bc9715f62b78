"""The intervals and verdicts of racebench.reports.stats, on numbers worked by hand."""

from __future__ import annotations

import math

import pytest

from racebench.reports import stats


def test_paired_interval_is_the_t_interval_of_the_differences() -> None:
    # Differences +10%, +20%, +30%: mean 20, sd 10, t(0.975, 2) = 4.303.
    interval = stats.paired([(100, 110), (100, 120), (100, 130)])
    assert interval is not None
    assert interval.mean == pytest.approx(20.0)
    half = 4.303 * 10 / math.sqrt(3)
    assert (interval.low, interval.high) == (pytest.approx(20 - half), pytest.approx(20 + half))
    assert interval.n == 3


def test_one_round_has_no_interval_and_no_verdict() -> None:
    interval = stats.paired([(100, 132)])
    assert interval is not None and interval.low is None
    text = stats.verdict(interval, stats.THROUGHPUT)
    assert "no verdict" in text and "faster" not in text


def test_verdicts() -> None:
    same = stats.paired([(100, 99), (100, 101), (100, 100.5), (100, 99.2)])
    assert stats.verdict(same, stats.THROUGHPUT).startswith("no measurable difference (95% CI ")
    slower = stats.paired([(100, 88), (100, 87), (100, 89), (100, 88)])
    assert stats.verdict(slower, stats.THROUGHPUT).startswith("slower by 12.0% (")
    costlier = stats.paired([(1.0, 1.12), (1.0, 1.13), (1.0, 1.11)])
    assert stats.verdict(costlier, stats.CPU_PER_REQUEST).startswith("costlier by 12.0% (")


def test_too_wide_says_how_many_rounds_it_would_take() -> None:
    wide = stats.paired([(100, 90), (100, 112), (100, 97), (100, 104)])
    text = stats.verdict(wide, stats.THROUGHPUT)
    assert text.startswith("no measurable difference")
    assert wide is not None
    needed = wide.rounds_for(2.0)
    assert needed is not None and needed > wide.n
    assert f"about {needed} rounds to resolve +-2%" in text


def test_welch_matches_a_hand_computation() -> None:
    old, new = [100.0, 102.0, 98.0], [90.0, 92.0, 88.0]
    interval = stats.welch(old, new)
    assert interval is not None
    assert interval.mean == pytest.approx(-10.0)
    se = math.sqrt(4 / 3 + 4 / 3)  # variances 4 and 4, three rounds each; df = 4
    assert interval.high == pytest.approx(-10.0 + 2.776 * se)
    assert interval.method == stats.BASELINE_METHOD


def test_t_quantiles() -> None:
    assert stats.t975(1) == pytest.approx(12.706)
    assert stats.t975(30) == pytest.approx(2.042)
    assert stats.t975(1000) == pytest.approx(1.962, abs=0.002)
