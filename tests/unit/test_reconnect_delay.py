"""The wait between attempts to reach the broker: around its interval, and different each time."""

from __future__ import annotations

import pytest

from twoway.broker import ReconnectDelay

DRAWS = 2000


@pytest.mark.parametrize(
    ("interval", "jitter"), [(1.0, 0.5), (0.2, 0.1), (5.0, 0.9)], ids=["default", "small", "wide"]
)
def test_each_wait_stays_within_the_jitter_of_the_interval(interval: float, jitter: float) -> None:
    delay = ReconnectDelay(interval, jitter)
    waits = [delay.draw() for _ in range(DRAWS)]
    assert all(interval * (1 - jitter) <= wait <= interval * (1 + jitter) for wait in waits)


def test_replicas_spread_over_the_whole_window() -> None:
    """Drawn anew each time: replicas that lost the broker together do not retry in step."""
    waits = sorted(ReconnectDelay(1.0, 0.5).draw() for _ in range(DRAWS))
    assert waits[0] < 0.6
    assert waits[-1] > 1.4
    assert len(set(waits)) == DRAWS


def test_without_jitter_every_wait_is_the_interval() -> None:
    assert {ReconnectDelay(0.3, 0.0).draw() for _ in range(10)} == {0.3}
