"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from tests.support.bank import bank_stack
from tests.support.stack import Stack


@pytest.fixture
async def bank_system(
    request: pytest.FixtureRequest,
    make_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    """The whole system with the bank adapter; parametrize it indirectly with a dict of more
    bank adapter settings (`{"conversation_ttl": 1}`)."""
    overrides: dict[str, Any] = getattr(request, "param", {})
    async with bank_stack(make_settings, amqp, tmp_path, **overrides) as stack:
        yield stack
