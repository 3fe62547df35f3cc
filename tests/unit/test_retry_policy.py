"""The outbound retry policy: capped backoff, raised to cover a gateway's Retry-After."""

from __future__ import annotations

import pytest

from twoway.topology import retry_delay

DELAYS = (1, 5, 30, 120, 600)

CASES = (
    # attempt n waits the n-th step, the last step repeats
    ("attempt-1", DELAYS, 1, None, 1),
    ("attempt-2", DELAYS, 2, None, 5),
    ("attempt-3", DELAYS, 3, None, 30),
    ("attempt-5-last-step", DELAYS, 5, None, 600),
    ("attempt-6-capped", DELAYS, 6, None, 600),
    ("attempt-100-capped", DELAYS, 100, None, 600),
    ("single-step", (10,), 3, None, 10),
    # Retry-After within the step keeps the step
    ("retry-after-below-step", DELAYS, 3, 10.0, 30),
    ("retry-after-equal-to-step", DELAYS, 2, 5.0, 5),
    ("retry-after-zero", DELAYS, 2, 0.0, 5),
    # a larger Retry-After raises the delay to the first step covering it
    ("retry-after-exactly-a-step", DELAYS, 1, 30.0, 30),
    ("retry-after-between-steps", DELAYS, 1, 31.0, 120),
    ("retry-after-fraction", DELAYS, 1, 1.5, 5),
    ("retry-after-raises-later-attempt", DELAYS, 3, 100.0, 120),
    # beyond every step: the largest
    ("retry-after-beyond-largest", DELAYS, 1, 3600.0, 600),
    ("retry-after-beyond-single-step", (10,), 1, 60.0, 10),
    ("unsorted-steps-covering", (30, 5, 120), 2, 20.0, 30),
)


@pytest.mark.parametrize(
    ("delays", "attempt", "retry_after", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_retry_delay(
    delays: tuple[int, ...], attempt: int, retry_after: float | None, expected: int
) -> None:
    delay = retry_delay(delays, attempt, retry_after)
    assert delay == expected
    # every delay must be one of the configured steps: each step is one delay queue
    assert delay in delays


@pytest.mark.parametrize("attempt", range(1, 9), ids=lambda attempt: f"attempt-{attempt}")
def test_backoff_never_shrinks(attempt: int) -> None:
    assert retry_delay(DELAYS, attempt + 1, None) >= retry_delay(DELAYS, attempt, None)
