"""A reply the gateway refuses twice: retried from the delay queues, delivered exactly once,
its delivery report comes back through ingress, and the message log shows the history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aio_pika.abc import AbstractRobustConnection
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.stack import Stack, just, running_stack
from twoway.message_log import LOG_COLLECTION, MessageLog, MessageRecord
from twoway.storage import Document
from twoway_echo.adapter import adapter as echo_adapter

pytestmark = [pytest.mark.e2e, pytest.mark.rabbit, pytest.mark.mongo]

SENDER = "+15551234567"


@pytest.fixture
async def stack(
    make_settings: Callable[..., Any], amqp: AbstractRobustConnection, tmp_path: Path
) -> AsyncIterator[Stack]:
    async with running_stack(
        make_settings,
        tmp_path,
        just(echo_adapter, make_settings),
        delivery_reports=True,
        outbound_settings={"retry_delays": [1], "max_attempts": 4},
    ) as stack:
        yield stack


def message_id_of(reply: dict[str, Any]) -> str:
    """Our message id, from the delivery-report URL the MT carried."""
    [reference] = parse_qs(urlsplit(str(reply["params"]["dlr_url"])).query)["ref"]
    message_id, _adapter, _signature = reference.rsplit(":", 2)
    return message_id


async def logged(stack: Stack, message_log: MessageLog, statuses: int) -> MessageRecord:
    """The log of the one reply the gateway received, once it holds `statuses` statuses."""
    for _ in range(200):
        replies = await stack.received(1)
        record = await message_log.get(message_id_of(replies[0])) if replies else None
        if record is not None and len(record.history) >= statuses:
            return record
        await asyncio.sleep(0.05)
    raise AssertionError("the message log never showed the history")


async def test_failed_twice_then_delivered_exactly_once_with_its_history(
    stack: Stack, mongo_db: AsyncDatabase[Document]
) -> None:
    async with stack.http.post(
        f"{stack.gateway}/faults", json={"status": 503, "count": 2}
    ) as response:
        assert response.status == 200
    await stack.send_mo(SENDER, "ECHO third time lucky")

    [reply] = await stack.received(1, within=10)
    assert (reply["to"], reply["text"]) == (SENDER, "third time lucky")
    record = await logged(stack, MessageLog(mongo_db[LOG_COLLECTION]), 5)
    await asyncio.sleep(0.5)  # nothing more arrives
    assert len(await stack.received(2, within=0)) == 1
    assert [entry["status"] for entry in record.history] == [
        "accepted",
        "retrying",
        "retrying",
        "sent",
        "delivered",
    ]
    details = [entry["detail"] for entry in record.history]
    assert details[1].startswith("attempt 1: HTTP 503")
    assert details[2].startswith("attempt 2: HTTP 503")
    assert details[3].startswith("attempt 3: HTTP 200")
    assert (record.status, record.gateway_id, record.adapter) == ("delivered", "sim", "echo")
    assert record.gateway_message_id == "1"
