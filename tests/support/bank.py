"""The bank adapter and its demo back-end (in the gateway simulator) for end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aio_pika.abc import AbstractRobustConnection

from tests.support.broker import adapter_queues, delete_queues
from tests.support.stack import Stack, running_stack
from twoway.sdk import Adapter, AdapterSettings
from twoway_bank_adapter.adapter import BankSettings
from twoway_bank_adapter.adapter import adapter as bank_adapter

RETRY_DELAYS = [1]


@asynccontextmanager
async def bank_stack(
    make_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    directory: Path,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    """The whole system with the bank adapter calling the gateway simulator's `/backend`, with
    short timeouts and retries (`overrides` are more of the adapter's settings)."""
    await delete_queues(amqp, adapter_queues(bank_adapter.name, RETRY_DELAYS))

    def adapters(gateway: str) -> list[tuple[Adapter, AdapterSettings]]:
        settings = make_settings(
            BankSettings,
            backend_url=f"{gateway}/backend/",
            backend_timeout=0.5,
            backend_retries=1,
            backend_retry_backoff=0.01,
            handler_max_attempts=2,
            handler_retry_delays=RETRY_DELAYS,
            **overrides,
        )
        return [(bank_adapter, settings)]

    async with running_stack(make_settings, directory, adapters) as stack:
        yield stack
