"""Keeping an in-memory copy of shared state fresh: `sms.control` notifications and a timer.

A router keeps the handler table in memory, outbound keeps the opt-out list: each process loads
its copy at start, applies the change a control message announces as soon as it arrives (every
replica has a private queue on the `sms.control` fanout), and reloads the whole copy on a timer,
a safety net for a notification lost while the broker connection was down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import structlog
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web

from twoway.messages import ANY_MESSAGE, AnyMessage
from twoway.service import AMQP_CONNECTION, CleanupContext
from twoway.topology import declare_control_queue

log = structlog.get_logger(__name__)


class ControlledState(Protocol):
    """An in-memory copy of shared state."""

    async def reload(self) -> None:
        """Load the whole state from where it is kept."""

    async def apply(self, message: AnyMessage) -> None:
        """Apply the change a control message announces (ignore messages about other state)."""


async def _reload_every(state: ControlledState, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await state.reload()
        except Exception as error:
            log.warning("state_reload_failed", state=type(state).__name__, error=str(error))


def control_context(
    get_state: Callable[[web.Application], ControlledState], reload_seconds: float
) -> CleanupContext:
    """Loads the state `get_state(app)` returns, applies every control message to it, and
    reloads it whole every `reload_seconds`.

    The control queue is consumed before the first load, so no change made meanwhile is missed.
    A control message that fails to apply is logged and dropped: the next reload catches up.
    """

    async def context(app: web.Application) -> AsyncIterator[None]:
        state = get_state(app)
        channel = await app[AMQP_CONNECTION].channel()
        queue = await declare_control_queue(channel)

        async def consume(incoming: AbstractIncomingMessage) -> None:
            async with incoming.process(ignore_processed=True):
                try:
                    await state.apply(ANY_MESSAGE.validate_json(incoming.body))
                except Exception as error:
                    log.warning(
                        "control_message_not_applied", state=type(state).__name__, error=str(error)
                    )

        await queue.consume(consume)
        await state.reload()
        reloader = asyncio.create_task(_reload_every(state, reload_seconds))
        yield
        reloader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reloader
        await channel.close()

    return context
