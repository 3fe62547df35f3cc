"""When outbound tries a message again.

The wait before a retry is the attempt's backoff step (`retry_delays`, the last repeats) times a
jitter factor picked at random (`RETRY_JITTER`: 0.8, 1.0 or 1.2, each with a delay queue of its
own), and at least the gateway's Retry-After. A message waits in the shortest delay queue that
covers its wait; a wait longer than the longest (a Retry-After of an hour) also puts its due time
in a header, and the message is parked again each time it comes back early, until it is due.

A message is not retried past its deadline: `retry_max_age` seconds after it was created, or its
`not_after` if sooner. A retry that would be due later makes it `expired` instead.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from twoway.messages import OutboundSMS
from twoway.topology import RETRY_JITTER, jittered, jittered_delays, retry_delay

ChooseFactor = Callable[[Sequence[float]], float]


@dataclass(frozen=True)
class RetryPolicy:
    steps: Sequence[int]
    """Seconds of backoff before retry 1, 2, ...; the last repeats."""
    max_attempts: int
    max_age: float
    """Seconds after its creation past which a message is not retried."""
    choose: ChooseFactor = random.choice
    """Picks the jitter factor of each retry (random; a test may pin it)."""

    @cached_property
    def queue_delays(self) -> list[float]:
        """The delay queues (seconds, ascending) a retry can wait in."""
        return jittered_delays(self.steps)

    def wait(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before the retry that follows the failed attempt `attempt` (1-based)."""
        backoff = jittered(retry_delay(self.steps, attempt), self.choose(RETRY_JITTER))
        return max(backoff, retry_after or 0.0)

    def deadline(self, message: OutboundSMS) -> tuple[datetime, str]:
        """The latest a retry of `message` may be due, and what sets it."""
        oldest = message.created_at + timedelta(seconds=self.max_age)
        if message.not_after is not None and message.not_after < oldest:
            return message.not_after, f"not_after ({message.not_after.isoformat()})"
        return oldest, f"maximum age ({self.max_age:g} s)"


def due_header(due: datetime) -> int:
    """The `HEADER_RETRY_DUE` value for `due` (read back as `Delivery.retry_due`)."""
    return round(due.timestamp() * 1000)
