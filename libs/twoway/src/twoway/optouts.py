"""The opt-out list: which numbers texted STOP to which short code, kept in MongoDB.

An opt-out is per (phone, short code): STOP to 12345 stops what 12345 sends, not what 67890 does.
An opt-out whose short code is unknown (an SMS posted without `to`) is stored under
`ANY_SHORT_CODE` and blocks every short code: when in doubt, honour the STOP.

Outbound must still send the few replies the router makes on the number's behalf (the STOP
confirmation, a HELP answer). The router writes each one into the opt-out it concerns, as an
`Exemption` (the reply's message id and text), before it publishes the reply. Adapters cannot
write there, and an exemption lets through only that exact message, so no adapter can use one
to reach an opted-out number with anything else.

`OptOutStore` is the repository; `OptOutIndex` is the in-memory copy outbound keeps, so that a
message to a number that never opted out costs no database round trip; `refuses` is the rule.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterable

from pydantic import AwareDatetime, BaseModel, ConfigDict
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from twoway.messages import OutboundSMS, utc_now
from twoway.storage import Document

OPTOUTS = "optouts"
ANY_SHORT_CODE = ""
MAX_EXEMPTIONS = 10
"""Exemptions kept per opt-out: the newest replies the router sent to that number."""


class Exemption(BaseModel):
    """A message the router sends to an opted-out number, which outbound must let through."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str
    text: str

    @classmethod
    def of(cls, message: OutboundSMS) -> Exemption:
        return cls(message_id=message.message_id, text=message.text)


def blocks(opted_out_of: str, sent_from: str) -> bool:
    """Whether an opt-out of short code `opted_out_of` stops messages sent from `sent_from`
    (`ANY_SHORT_CODE` on either side: when in doubt, it does)."""
    return ANY_SHORT_CODE in (opted_out_of, sent_from) or opted_out_of == sent_from


class OptOut(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    phone: str
    short_code: str
    opted_out_at: AwareDatetime
    exemptions: tuple[Exemption, ...] = ()

    def exempts(self, message: OutboundSMS) -> bool:
        return Exemption.of(message) in self.exemptions


def refuses(optouts: Iterable[OptOut], message: OutboundSMS, short_code: str) -> bool:
    """Whether `message`, sent from `short_code`, must not go out: `optouts` include one of its
    number that blocks that short code, and none of those exempts the message."""
    blocking = [
        optout
        for optout in optouts
        if optout.phone == message.to and blocks(optout.short_code, short_code)
    ]
    return bool(blocking) and not any(optout.exempts(message) for optout in blocking)


class OptOutIndex:
    """Which short codes each number opted out of, in memory: enough to tell that a message is
    certainly allowed; a possible refusal is decided on the number's opt-outs read afresh.

    About 200 bytes per opt-out (phone string, tuple, dictionary slot; short codes interned).
    """

    def __init__(self, entries: Iterable[tuple[str, str]] = ()) -> None:
        self._by_phone: dict[str, tuple[str, ...]] = {}
        for phone, short_code in entries:
            self._by_phone[phone] = (*self._by_phone.get(phone, ()), sys.intern(short_code))

    def __len__(self) -> int:
        return sum(len(short_codes) for short_codes in self._by_phone.values())

    def replace(self, phone: str, short_codes: Iterable[str]) -> None:
        """Make `short_codes` all that `phone` opted out of (none: opted in everywhere)."""
        current = tuple(sys.intern(short_code) for short_code in short_codes)
        if current:
            self._by_phone[phone] = current
        else:
            self._by_phone.pop(phone, None)

    def may_refuse(self, phone: str, short_code: str) -> bool:
        """False when nothing from `short_code` to `phone` can be refused."""
        return any(blocks(opted_out, short_code) for opted_out in self._by_phone.get(phone, ()))


def _blocking(short_code: str) -> Document:
    """The query part that selects the opt-outs blocking `short_code` (see `OptOut.blocks`)."""
    if short_code == ANY_SHORT_CODE:
        return {}
    return {"short_code": {"$in": [short_code, ANY_SHORT_CODE]}}


def _push(exemption: Exemption) -> Document:
    return {"exemptions": {"$each": [exemption.model_dump()], "$slice": -MAX_EXEMPTIONS}}


class OptOutStore:
    """The `optouts` collection: one document per (phone, short code) that opted out."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._optouts = db[OPTOUTS]

    async def ensure_indexes(self) -> None:
        await self._optouts.create_index(
            [("phone", ASCENDING), ("short_code", ASCENDING)], unique=True
        )

    async def opt_out(
        self, phone: str, short_code: str, exemption: Exemption | None = None
    ) -> None:
        """Opt `phone` out of `short_code` (idempotent); `exemption`: the confirmation."""
        update: Document = {"$setOnInsert": {"opted_out_at": utc_now()}}
        if exemption is not None:
            update["$push"] = _push(exemption)
        await self._optouts.update_one(
            {"phone": phone, "short_code": short_code}, update, upsert=True
        )

    async def opt_in(self, phone: str, short_code: str) -> bool:
        """Opt `phone` back in to `short_code`; False if it was not opted out."""
        result = await self._optouts.delete_one({"phone": phone, "short_code": short_code})
        return result.deleted_count > 0

    async def exempt(self, phone: str, short_code: str, exemption: Exemption) -> bool:
        """Let `exemption` through the opt-outs of `phone` that block `short_code`; False when
        there are none (the number is not opted out)."""
        result = await self._optouts.update_many(
            {"phone": phone, **_blocking(short_code)}, {"$push": _push(exemption)}
        )
        return result.matched_count > 0

    async def opted_out_among(self, phones: Iterable[str], short_code: str) -> set[str]:
        """Those of `phones` that opted out of `short_code`: one query for a whole batch (a
        broadcast skips them)."""
        cursor = self._optouts.find(
            {"phone": {"$in": list(phones)}, **_blocking(short_code)}, {"phone": 1}
        )
        return {document["phone"] async for document in cursor}

    async def of_phone(self, phone: str) -> list[OptOut]:
        return [OptOut.model_validate(doc) async for doc in self._optouts.find({"phone": phone})]

    async def entries(self) -> AsyncIterator[tuple[str, str]]:
        """Every opt-out as (phone, short code), streamed from a cursor."""
        async for document in self._optouts.find({}, {"_id": 0, "phone": 1, "short_code": 1}):
            yield document["phone"], document["short_code"]
