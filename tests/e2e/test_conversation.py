"""Conversations end to end: the bank's TRANSFER asks three questions, and each next SMS from
that number is the answer, without a keyword and ahead of keyword handlers (only STOP and HELP
come first); two numbers talk to it at the same time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest
from aio_pika.abc import AbstractRobustConnection
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.broker import drain
from tests.support.stack import Phone, Stack
from twoway.conversations import CONVERSATIONS
from twoway.storage import Document
from twoway.topology import UNMATCHED_QUEUE
from twoway_router.settings import RouterSettings

pytestmark = [pytest.mark.e2e, pytest.mark.rabbit, pytest.mark.mongo]

ALICE = "+15551230001"
BOB = "+15551230002"
HOW_MUCH = "How much would you like to transfer?"


async def together(*replies: Awaitable[str]) -> list[str]:
    """The replies to SMS sent at the same time from different phones."""
    return list(await asyncio.gather(*replies))


async def test_two_numbers_hold_three_step_conversations_at_the_same_time(
    bank_system: Stack, mongo_db: AsyncDatabase[Document]
) -> None:
    alice, bob = Phone(bank_system, ALICE), Phone(bank_system, BOB)

    assert await together(alice.text("TRANSFER"), bob.text("transfer")) == [HOW_MUCH] * 2
    assert await bob.text("lots") == "Please send an amount, like 12.50."
    assert await together(alice.text("10"), bob.text("25.5")) == [
        "To which account should 10.00 go?",
        "To which account should 25.50 go?",
    ]
    assert await together(alice.text("12345678"), bob.text("8765 4321")) == [
        "Send 10.00 to account 12345678? Reply YES to confirm.",
        "Send 25.50 to account 87654321? Reply YES to confirm.",
    ]
    assert await together(alice.text("yes"), bob.text("no")) == [
        "Sent 10.00 to account 12345678. Your balance is 90.00.",
        "Transfer cancelled.",
    ]

    # Both conversations are over: keywords work again.
    assert await mongo_db[CONVERSATIONS].count_documents({}) == 0
    assert await together(alice.text("BAL"), bob.text("BAL")) == [
        "Your balance is 90.00 USD.",
        "Your balance is 100.00 USD.",
    ]


async def test_an_open_conversation_outranks_keyword_handlers(bank_system: Stack) -> None:
    alice = Phone(bank_system, ALICE)
    assert await alice.text("TRANSFER") == HOW_MUCH

    # BAL is a keyword handler's, but Alice owes an answer: the question's step takes it.
    assert await alice.text("BAL") == "Please send an amount, like 12.50."
    # (Not "TRANSFER" again: the router drops a repeat of the same text as a duplicate.)
    assert await alice.text("transfer it") == "Please send an amount, like 12.50."
    assert await alice.text("10") == "To which account should 10.00 go?"

    replies = [m["text"] for m in await bank_system.received(4, within=0.5) if m["to"] == ALICE]
    assert len(replies) == 4
    assert not [reply for reply in replies if reply.startswith("Your balance")]


async def test_help_outranks_an_open_conversation_which_stays_open(bank_system: Stack) -> None:
    alice = Phone(bank_system, ALICE)
    assert await alice.text("TRANSFER") == HOW_MUCH
    assert await alice.text("HELP") == RouterSettings.model_fields["help_reply"].default
    assert await alice.text("10") == "To which account should 10.00 go?"


async def test_stop_outranks_an_open_conversation(bank_system: Stack) -> None:
    alice = Phone(bank_system, ALICE)
    assert await alice.text("TRANSFER") == HOW_MUCH
    assert await alice.text("STOP") == RouterSettings.model_fields["optout_reply"].default


@pytest.mark.parametrize("bank_system", [{"conversation_ttl": 1}], indirect=True)
async def test_an_expired_conversation_no_longer_takes_the_next_sms(
    bank_system: Stack, amqp: AbstractRobustConnection, mongo_db: AsyncDatabase[Document]
) -> None:
    alice = Phone(bank_system, ALICE)
    assert await alice.text("TRANSFER") == HOW_MUCH
    [conversation] = await mongo_db[CONVERSATIONS].find({}).to_list()
    assert conversation["handler"] == "transfer_amount"
    indexes = await mongo_db[CONVERSATIONS].index_information()
    assert indexes["expires_at_1"]["expireAfterSeconds"] == 0

    await asyncio.sleep(1.1)  # the question's time to live
    message_id = await bank_system.send_mo(ALICE, "10")

    [parked] = await drain(amqp, UNMATCHED_QUEUE, expect=1)
    assert parked.message_id == message_id
    assert len(await bank_system.received(2, within=0.5)) == 1
