"""The outbound retry policy: capped backoff with jitter, at least a gateway's Retry-After (however
long), never past a message's deadline; and the delay queues that carry it out."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from twoway.messages import OutboundSMS
from twoway.topology import (
    RETRY_JITTER,
    delay_queue_for,
    jittered_delays,
    retry_delay,
    retry_queue,
)
from twoway_outbound.retries import RetryPolicy

DELAYS = (1, 5, 30, 120, 600)
QUEUES = [0.8, 1.0, 1.2, 4.0, 5.0, 6.0, 24.0, 30.0, 36.0, 96.0, 120.0, 144.0, 480.0, 600.0, 720.0]

BACKOFF_CASES = (
    # attempt n waits the n-th step, the last step repeats
    ("attempt-1", DELAYS, 1, 1),
    ("attempt-2", DELAYS, 2, 5),
    ("attempt-3", DELAYS, 3, 30),
    ("attempt-5-last-step", DELAYS, 5, 600),
    ("attempt-6-capped", DELAYS, 6, 600),
    ("attempt-100-capped", DELAYS, 100, 600),
    ("single-step", (10,), 3, 10),
)


@pytest.mark.parametrize(
    ("delays", "attempt", "expected"),
    [case[1:] for case in BACKOFF_CASES],
    ids=[case[0] for case in BACKOFF_CASES],
)
def test_retry_delay(delays: tuple[int, ...], attempt: int, expected: int) -> None:
    assert retry_delay(delays, attempt) == expected


@pytest.mark.parametrize("attempt", range(1, 9), ids=lambda attempt: f"attempt-{attempt}")
def test_backoff_never_shrinks(attempt: int) -> None:
    assert retry_delay(DELAYS, attempt + 1) >= retry_delay(DELAYS, attempt)


def test_every_step_has_a_delay_queue_per_jitter_factor() -> None:
    assert jittered_delays(DELAYS) == QUEUES
    assert jittered_delays((10,)) == [8.0, 10.0, 12.0]
    assert jittered_delays((5, 4)) == [3.2, 4.0, 4.8, 5.0, 6.0]  # shared delays once


QUEUE_NAME_CASES = (
    ("whole-seconds-as-before", 1, "outbound.send.retry.1s"),
    ("whole-float", 720.0, "outbound.send.retry.720s"),
    ("fraction", 0.8, "outbound.send.retry.0.8s"),
    ("milliseconds", 3.25, "outbound.send.retry.3.25s"),
)


@pytest.mark.parametrize(
    ("delay", "name"), [c[1:] for c in QUEUE_NAME_CASES], ids=[c[0] for c in QUEUE_NAME_CASES]
)
def test_retry_queue_names(delay: float, name: str) -> None:
    assert retry_queue("outbound.send", delay) == name


PARK_CASES = (
    ("shorter-than-any", 0.5, 0.8),
    ("exactly-a-queue", 1.0, 1.0),
    ("between-queues", 1.1, 1.2),
    ("retry-after-20", 20.0, 24.0),
    ("the-longest", 720.0, 720.0),
    # longer than any queue: the longest, then parked again until due
    ("retry-after-an-hour", 3600.0, 720.0),
)


@pytest.mark.parametrize(
    ("wait", "queue"), [c[1:] for c in PARK_CASES], ids=[c[0] for c in PARK_CASES]
)
def test_delay_queue_for(wait: float, queue: float) -> None:
    assert delay_queue_for(wait, QUEUES) == queue


def pinned(factor: float) -> RetryPolicy:
    def choose(factors: Sequence[float]) -> float:
        assert tuple(factors) == RETRY_JITTER
        return factor

    return RetryPolicy(DELAYS, max_attempts=6, max_age=3600, choose=choose)


WAIT_CASES = (
    ("jitter-down", 1, None, 0.8, 0.8),
    ("jitter-none", 2, None, 1.0, 5.0),
    ("jitter-up", 3, None, 1.2, 36.0),
    ("capped-step", 9, None, 1.2, 720.0),
    ("retry-after-within-the-wait", 3, 10.0, 0.8, 24.0),
    ("retry-after-over-the-jittered-step", 2, 5.5, 0.8, 5.5),
    ("retry-after-zero", 2, 0.0, 1.0, 5.0),
    # no longer cut to the largest step: an hour is an hour
    ("retry-after-an-hour", 1, 3600.0, 1.0, 3600.0),
)


@pytest.mark.parametrize(
    ("attempt", "retry_after", "factor", "expected"),
    [c[1:] for c in WAIT_CASES],
    ids=[c[0] for c in WAIT_CASES],
)
def test_wait(attempt: int, retry_after: float | None, factor: float, expected: float) -> None:
    assert pinned(factor).wait(attempt, retry_after) == expected


def test_jitter_spreads_retries_over_the_delay_queues_of_the_step() -> None:
    policy = RetryPolicy(DELAYS, max_attempts=6, max_age=3600, choose=random.Random(5).choice)
    waits = Counter(policy.wait(3, None) for _ in range(300))
    assert set(waits) == {24.0, 30.0, 36.0}
    assert all(count > 50 for count in waits.values()), waits
    assert set(waits) <= set(policy.queue_delays)


CREATED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("not_after", "deadline", "limit"),
    [
        (None, CREATED + timedelta(hours=1), "maximum age (3600 s)"),
        (
            CREATED + timedelta(minutes=10),
            CREATED + timedelta(minutes=10),
            "not_after (2026-11-25T12:10:00+00:00)",
        ),
        (CREATED + timedelta(hours=2), CREATED + timedelta(hours=1), "maximum age (3600 s)"),
    ],
    ids=["max-age", "not-after-sooner", "max-age-sooner"],
)
def test_deadline(not_after: datetime | None, deadline: datetime, limit: str) -> None:
    message = OutboundSMS(to="+15551234567", text="hi", created_at=CREATED, not_after=not_after)
    assert pinned(1.0).deadline(message) == (deadline, limit)
