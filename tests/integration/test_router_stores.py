"""The router's MongoDB stores on a real MongoDB-speaking server: opt-outs, dedupe claims and
the unmatched record."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from twoway.dedupe import DEDUPE, DedupeKey, DedupeStore
from twoway.messages import InboundSMS, OutboundSMS
from twoway.optouts import ANY_SHORT_CODE, OPTOUTS, Exemption, OptOutStore
from twoway.storage import Document
from twoway_router.settings import UnmatchedFallback
from twoway_router.unmatched import UNMATCHED, UnmatchedRecord

pytestmark = pytest.mark.mongo

PHONE = "+14155552671"


@pytest.fixture
async def optouts(mongo_db: AsyncDatabase[Document]) -> OptOutStore:
    store = OptOutStore(mongo_db)
    await store.ensure_indexes()
    return store


def confirmation(text: str = "You are unsubscribed") -> Exemption:
    return Exemption.of(OutboundSMS(to=PHONE, text=text))


async def test_opting_out_twice_keeps_one_optout_with_both_confirmations(
    optouts: OptOutStore, mongo_db: AsyncDatabase[Document]
) -> None:
    first, second = confirmation(), confirmation()
    await optouts.opt_out(PHONE, "12345", first)
    await optouts.opt_out(PHONE, "12345", second)
    [optout] = await optouts.of_phone(PHONE)
    assert (optout.short_code, optout.exemptions) == ("12345", (first, second))
    assert await mongo_db[OPTOUTS].count_documents({}) == 1


async def test_concurrent_opt_outs_do_not_duplicate(
    optouts: OptOutStore, mongo_db: AsyncDatabase[Document]
) -> None:
    await asyncio.gather(*(optouts.opt_out(PHONE, "12345") for _ in range(10)))
    assert await mongo_db[OPTOUTS].count_documents({}) == 1


async def test_only_the_newest_exemptions_are_kept(optouts: OptOutStore) -> None:
    exemptions = [confirmation(f"reply {n}") for n in range(12)]
    for exemption in exemptions:
        await optouts.opt_out(PHONE, "12345", exemption)
    [optout] = await optouts.of_phone(PHONE)
    assert optout.exemptions == tuple(exemptions[-10:])


async def test_opting_in_removes_only_that_short_code(optouts: OptOutStore) -> None:
    await optouts.opt_out(PHONE, "12345")
    await optouts.opt_out(PHONE, "67890")
    assert await optouts.opt_in(PHONE, "12345") is True
    assert await optouts.opt_in(PHONE, "12345") is False
    assert [optout.short_code for optout in await optouts.of_phone(PHONE)] == ["67890"]


async def test_an_exemption_goes_to_every_blocking_optout_and_only_those(
    optouts: OptOutStore,
) -> None:
    help_reply = confirmation("Reply STOP to unsubscribe")
    assert await optouts.exempt(PHONE, "12345", help_reply) is False  # not opted out
    await optouts.opt_out(PHONE, "12345")
    await optouts.opt_out(PHONE, ANY_SHORT_CODE)
    await optouts.opt_out(PHONE, "67890")
    assert await optouts.exempt(PHONE, "12345", help_reply) is True
    exempted = {o.short_code: o.exemptions for o in await optouts.of_phone(PHONE)}
    assert exempted == {"12345": (help_reply,), ANY_SHORT_CODE: (help_reply,), "67890": ()}


async def test_opted_out_among_a_batch(optouts: OptOutStore) -> None:
    await optouts.opt_out("+1", "12345")
    await optouts.opt_out("+2", ANY_SHORT_CODE)
    await optouts.opt_out("+3", "67890")
    batch = ["+1", "+2", "+3", "+4"]
    assert await optouts.opted_out_among(batch, "12345") == {"+1", "+2"}
    assert await optouts.opted_out_among(batch, ANY_SHORT_CODE) == {"+1", "+2", "+3"}
    assert sorted([entry async for entry in optouts.entries()]) == [
        ("+1", "12345"),
        ("+2", ANY_SHORT_CODE),
        ("+3", "67890"),
    ]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def dedupe(mongo_db: AsyncDatabase[Document], clock: Clock) -> DedupeStore:
    store = DedupeStore(mongo_db, clock)
    await store.ensure_indexes()
    return store


KEY = DedupeKey("a" * 64, timedelta(seconds=30))


async def test_the_first_claim_wins_and_a_second_message_is_a_duplicate(
    dedupe: DedupeStore,
) -> None:
    assert await dedupe.claim(KEY, "m1") is True
    assert await dedupe.claim(KEY, "m2") is False


async def test_a_redelivery_of_the_claiming_message_is_not_a_duplicate(
    dedupe: DedupeStore,
) -> None:
    assert await dedupe.claim(KEY, "m1") is True
    assert await dedupe.claim(KEY, "m1") is True


async def test_concurrent_copies_one_wins(
    dedupe: DedupeStore, mongo_db: AsyncDatabase[Document]
) -> None:
    results = await asyncio.gather(*(dedupe.claim(KEY, f"m{n}") for n in range(20)))
    assert results.count(True) == 1
    holder = await mongo_db[DEDUPE].find_one({"_id": KEY.digest})
    assert holder is not None
    assert holder["message_id"] == f"m{results.index(True)}"


async def test_a_batch_mixes_new_keys_and_duplicates(dedupe: DedupeStore) -> None:
    await dedupe.claim(KEY, "m1")
    other = DedupeKey("b" * 64, KEY.ttl)
    results = await asyncio.gather(
        dedupe.claim(other, "m2"), dedupe.claim(KEY, "m3"), dedupe.claim(KEY, "m1")
    )
    assert list(results) == [True, False, True]


async def test_an_expired_claim_is_taken_over(dedupe: DedupeStore, clock: Clock) -> None:
    assert await dedupe.claim(KEY, "m1") is True
    clock.now += timedelta(seconds=29)
    assert await dedupe.claim(KEY, "m2") is False
    clock.now += timedelta(seconds=2)
    assert await dedupe.claim(KEY, "m3") is True
    assert await dedupe.claim(KEY, "m4") is False


async def test_claims_expire_through_a_ttl_index(
    dedupe: DedupeStore, mongo_db: AsyncDatabase[Document]
) -> None:
    indexes = await mongo_db[DEDUPE].index_information()
    assert indexes["expires_at_1"]["expireAfterSeconds"] == 0


async def test_every_unmatched_sms_is_recorded_once(mongo_db: AsyncDatabase[Document]) -> None:
    record = UnmatchedRecord(mongo_db, timedelta(days=1))
    await record.ensure_indexes()
    messages = [
        InboundSMS(gateway_id="sim", sender=PHONE, recipient="12345", text=f"NOPE {n}")
        for n in range(5)
    ]
    park = UnmatchedFallback()
    await asyncio.gather(*(record.record(message, park) for message in messages))
    await record.record(messages[0], park)  # a redelivery
    documents = await mongo_db[UNMATCHED].find({}).sort("_id").to_list()
    assert [d["_id"] for d in documents] == sorted(m.message_id for m in messages)
    assert {(d["keyword"], d["fallback"], d["recipient"]) for d in documents} == {
        ("NOPE", "none", "12345")
    }
