"""What an adapter does when a handler fails: retry later, then give up politely.

A handler run that raises, or outlasts its timeout (`handler_timeout`, or the handler's own
`timeout=`), is a failure. After a failure:

- while attempts remain (`handler_max_attempts` in all), the SMS waits in a delay queue of the
  adapter's queue (`adapter.<name>.retry.<seconds>s`, `handler_retry_delays` as capped backoff)
  and comes back marked with its attempt number: the same durable mechanism outbound retries
  with (`Publisher.retry_later`), so a waiting retry survives a restart of the adapter;
- otherwise, or at once for a failure that cannot get better (the handler raised `Reject`, or a
  back-end refused the request with a 4xx), the texter receives ONE reply, `failure_reply`
  ("please try again later"; empty: none), and the SMS goes to `adapter.<name>.dead` with the
  reason in its `twoway-reason` header.

A retry re-runs the whole handler, but what it sent before failing is not sent again: a re-run
sends the same message ids, marked as possible repeats (`twoway.sdk.HandlerContext`), and
outbound sends each id once. Its other effects (a back-end call) are the handler's to make safe
to repeat. Each SMS is handled in a task of its own, at most `prefetch` of them at once per
adapter process, so a slow handler holds one slot, never the queue; the timeout bounds how long
it holds it.

`decide` is the pure policy; `FailurePolicy` applies it at the edge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from pydantic import Field

from twoway import metrics
from twoway.broker import Publisher, Reject
from twoway.consumed import Delivery
from twoway.sdk_http import BackendError
from twoway.settings import TwowaySettings
from twoway.topology import retry_delay

log = structlog.get_logger(__name__)

DEFAULT_FAILURE_REPLY = "Sorry, we could not handle your message just now. Please try again later."


class HandlerPolicySettings(TwowaySettings):
    handler_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a handler may run (a handler may set its own)"
    )
    handler_max_attempts: int = Field(
        default=4, ge=1, description="Runs of a failing handler before its SMS is dead-lettered"
    )
    handler_retry_delays: list[int] = Field(
        default=[5, 30, 120],
        min_length=1,
        description="Seconds before retry 1, 2, ...; the last repeats (capped backoff)",
    )
    failure_reply: str = Field(
        default=DEFAULT_FAILURE_REPLY,
        description="Sent once to the texter when their SMS could not be handled; empty: none",
    )


class HandlerTimedOut(Exception):
    """The handler outlasted its timeout and was cancelled."""


EXPECTED_FAILURES = (HandlerTimedOut, BackendError)
"""Failures whose message says it all: logged without a traceback."""


@dataclass(frozen=True)
class RetryLater:
    delay_seconds: int
    next_attempt: int


@dataclass(frozen=True)
class GiveUp:
    reason: str


def is_permanent(error: BaseException) -> bool:
    """Failures that a retry cannot fix: a `Reject`, or a back-end's refusal (4xx)."""
    return isinstance(error, Reject) or (isinstance(error, BackendError) and not error.retryable)


def describe(error: BaseException) -> str:
    if isinstance(error, Reject | HandlerTimedOut):
        return str(error)
    return f"{type(error).__name__}: {error}"


def decide(
    error: BaseException, attempt: int, max_attempts: int, delays: Sequence[int]
) -> RetryLater | GiveUp:
    """What follows the failure `error` of attempt number `attempt` (1-based)."""
    reason = describe(error)
    if is_permanent(error):
        return GiveUp(reason)
    if attempt >= max_attempts:
        return GiveUp(f"failed {attempt} time(s); last: {reason}")
    return RetryLater(retry_delay(delays, attempt), attempt + 1)


class FailurePolicy:
    """Runs handlers of one adapter queue under the policy."""

    def __init__(
        self, adapter: str, queue: str, settings: HandlerPolicySettings, publisher: Publisher
    ) -> None:
        self._adapter = adapter
        self._queue = queue
        self._settings = settings
        self._publisher = publisher

    async def run(
        self,
        delivery: Delivery,
        handle: Callable[[], Awaitable[None]],
        *,
        handler_timeout: float | None,
        give_up: Callable[[str], Awaitable[None]],
    ) -> None:
        """Run `handle` for at most `handler_timeout` seconds (None: the setting). On failure,
        schedule the retry; or call `give_up(reason)` and raise `Reject(reason)`, which the
        consumer turns into a dead letter with that reason."""
        attempt = delivery.attempt
        seconds = handler_timeout or self._settings.handler_timeout
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                await handle()
            return
        except TimeoutError as error:
            failure: Exception = (
                HandlerTimedOut(f"handler timed out after {seconds:g} s")
                if deadline.expired()
                else error
            )
        except Exception as error:
            failure = error
        decision = decide(
            failure,
            attempt,
            self._settings.handler_max_attempts,
            self._settings.handler_retry_delays,
        )
        if isinstance(decision, RetryLater):
            await self._publisher.retry_later(
                delivery, self._queue, decision.delay_seconds, decision.next_attempt
            )
            metrics.HANDLER_RETRIES.labels(adapter=self._adapter).inc()
            log.warning(
                "handler_failed_retry_scheduled",
                attempt=attempt,
                delay_seconds=decision.delay_seconds,
                error=describe(failure),
                exc_info=None if isinstance(failure, EXPECTED_FAILURES) else failure,
            )
            return
        metrics.HANDLER_GAVE_UP.labels(adapter=self._adapter).inc()
        log.error("handler_gave_up", attempt=attempt, reason=decision.reason)
        await give_up(decision.reason)
        raise Reject(decision.reason) from failure
