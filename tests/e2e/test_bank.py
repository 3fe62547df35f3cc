"""The bank adapter end to end: BAL through ingress, router, the adapter, the demo back-end in the
gateway simulator, outbound, and back to the gateway simulator."""

from __future__ import annotations

from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from tests.support.broker import drain
from tests.support.stack import Phone, Stack
from twoway.handler_policy import DEFAULT_FAILURE_REPLY
from twoway.topology import adapter_queue, dead_letter_queue

pytestmark = [pytest.mark.e2e, pytest.mark.rabbit, pytest.mark.mongo]

SENDER = "+15551234567"


async def backend_requests(stack: Stack) -> list[dict[str, Any]]:
    async with stack.http.get(f"{stack.gateway}/backend/requests") as response:
        requests: list[dict[str, Any]] = await response.json()
    return requests


async def break_backend(stack: Stack, faults: dict[str, Any]) -> None:
    async with stack.http.post(f"{stack.gateway}/backend/faults", json=faults) as response:
        assert response.status == 200


async def test_bal_asks_the_backend_and_replies_with_the_balance(bank_system: Stack) -> None:
    message_id = await bank_system.send_mo(SENDER, "BAL")

    [reply] = await bank_system.received(1)
    assert (reply["to"], reply["text"]) == (SENDER, "Your balance is 100.00 USD.")
    [request] = await backend_requests(bank_system)
    assert request["method"] == "GET"
    assert request["path"] == f"/backend/accounts/{SENDER}/balance"
    assert request["headers"]["X-Twoway-Message-Id"] == message_id


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"count": 100, "status": 503}, id="backend-down"),
        pytest.param({"count": 100, "delay": 2}, id="backend-timing-out"),
    ],
)
async def test_a_failing_backend_gets_the_texter_one_polite_reply(
    bank_system: Stack, amqp: AbstractRobustConnection, fault: dict[str, Any]
) -> None:
    await break_backend(bank_system, fault)
    message_id = await bank_system.send_mo(SENDER, "BALANCE")

    [dead] = await drain(amqp, dead_letter_queue(adapter_queue("bank")), expect=1, within=10)
    assert dead.message_id == message_id
    assert "failed 2 time(s)" in str(dead.headers["twoway-reason"])
    # 2 handler attempts, each a GET tried twice
    assert len(await backend_requests(bank_system)) == 4
    replies = await bank_system.received(2, within=1.0)
    assert [(reply["to"], reply["text"]) for reply in replies] == [(SENDER, DEFAULT_FAILURE_REPLY)]


async def test_a_backend_refusal_is_answered_by_the_handler(bank_system: Stack) -> None:
    await break_backend(bank_system, {"count": 1, "status": 404})
    await bank_system.send_mo(SENDER, "BAL")
    [reply] = await bank_system.received(1)
    assert reply["text"] == "We have no account for this number."


async def test_a_transfer_the_backend_refuses_is_explained(bank_system: Stack) -> None:
    phone = Phone(bank_system, SENDER)
    for text in ("TRANSFER", "500", "12345678"):
        await phone.text(text)
    assert await phone.text("YES") == "Transfer refused: insufficient funds."
