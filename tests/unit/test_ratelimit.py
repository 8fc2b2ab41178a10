"""agent.ratelimit: a burst per window, the rest counted and reported once."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.ratelimit import RateLimit


def test_a_burst_passes_then_the_rest_is_counted_and_reported_in_the_next_window() -> None:
    limit = RateLimit(burst=2, window=10.0)
    verdicts = [limit.check(now) for now in (0.0, 1.0, 2.0, 3.0, 9.9)]
    assert [v.log for v in verdicts] == [True, True, False, False, False]
    assert all(v.suppressed == 0 for v in verdicts)
    later = limit.check(10.0)
    assert later.log and later.suppressed == 3
    assert limit.check(10.5).suppressed == 0


def test_nothing_suppressed_means_nothing_reported() -> None:
    limit = RateLimit(burst=5, window=1.0)
    assert [limit.check(float(t)).suppressed for t in range(20)] == [0] * 20


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimit(burst=-1, window=1.0)
    with pytest.raises(ValueError):
        RateLimit(burst=1, window=0.0)


@given(
    burst=st.integers(0, 20),
    window=st.floats(0.1, 100.0),
    gaps=st.lists(st.floats(0.0, 50.0), max_size=300),
)
def test_every_message_is_logged_or_reported_and_no_window_exceeds_the_burst(
    burst: int, window: float, gaps: list[float]
) -> None:
    limit = RateLimit(burst=burst, window=window)
    now = 0.0
    logged_in_window: dict[int, int] = {}
    window_index = -1
    window_start = None
    logged = reported = 0
    for gap in gaps:
        now += gap
        if window_start is None or now - window_start >= window:
            window_start, window_index = now, window_index + 1
        verdict = limit.check(now)
        reported += verdict.suppressed
        if verdict.log:
            logged += 1
            logged_in_window[window_index] = logged_in_window.get(window_index, 0) + 1
    # `now + window - now` may round to just below `window`: look two windows ahead.
    pending = limit.check(now + 2 * window).suppressed
    assert logged + reported + pending == len(gaps)
    assert all(count <= burst for count in logged_in_window.values())
