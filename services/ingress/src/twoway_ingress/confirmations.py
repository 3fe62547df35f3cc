"""Codes that confirm a `/subscribeSMS` change in public mode (double opt-in), kept in MongoDB.

One document per phone number in `subscribe_confirmations`: the change asked for (event source,
subscribe or unsubscribe, user name, alias), a SHA-256 hash of the code (never the code), the
attempts made at it and when it was sent. A new code for the number replaces the one before, but
only once `interval` has passed since that one was sent (`TooSoon`), so the endpoint cannot be
used to flood a phone. A code works for `ttl`, for `attempts` tries, and once: a confirmed
document keeps only what the send limit needs, and a TTL index drops it when both have run out.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from twoway.storage import Document, stored_now

CONFIRMATIONS = "subscribe_confirmations"
CODE_DIGITS = 6


@dataclass(frozen=True)
class SubscriptionChange:
    """What a `/subscribeSMS` request asks: `phone` (E.164) joins or leaves `event_source`."""

    subscribe: bool
    event_source: str
    phone: str
    user_name: str | None = None
    alias: str | None = None


class TooSoon(Exception):
    """The number was sent a code less than the interval ago."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"this number was sent a code just now; retry in {retry_after} s")
        self.retry_after = retry_after


class WrongCode(Exception):
    """No code for this change, or another one, or one that expired or was used."""


class TooManyAttempts(Exception):
    """Every try at this code is spent: a new code must be asked for."""


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_hash(phone: str, code: str) -> str:
    """The stored form of `code` (bound to its number, so two numbers' hashes never compare)."""
    return hashlib.sha256(f"{phone}:{code}".encode()).hexdigest()


def seconds_until(moment: datetime, now: datetime) -> int:
    """Whole seconds from `now` until `moment`, at least 1 (a Retry-After)."""
    return max(1, math.ceil((moment - now).total_seconds()))


class Confirmations:
    """The pending confirmations: codes sent, tried and used."""

    def __init__(
        self, db: AsyncDatabase[Document], *, ttl: timedelta, interval: timedelta, attempts: int
    ) -> None:
        self._confirmations = db[CONFIRMATIONS]
        self.ttl = ttl
        self._interval = interval
        self._attempts = attempts
        self._indexed = False

    async def _ensure_indexes(self) -> None:
        """Done by the first code each process sends, not at start, which must not wait for
        the database."""
        await self._confirmations.create_index("expires_at", expireAfterSeconds=0)
        self._indexed = True

    async def start(self, change: SubscriptionChange) -> str:
        """A new code confirming `change`, replacing any earlier one of its number; `TooSoon`
        while the number's last code is younger than the interval."""
        if not self._indexed:
            await self._ensure_indexes()
        now = stored_now()
        code = new_code()
        document: Document = {
            "event_source": change.event_source,
            "subscribe": change.subscribe,
            "user_name": change.user_name,
            "alias": change.alias,
            "code_hash": code_hash(change.phone, code),
            "attempts": 0,
            "sent_at": now,
            "expires_at": now + max(self.ttl, self._interval),
        }
        try:
            # Matches only a document old enough to replace; a younger one makes the upsert
            # insert a second document with the same _id, which the database refuses.
            await self._confirmations.update_one(
                {"_id": change.phone, "sent_at": {"$lte": now - self._interval}},
                {"$set": document},
                upsert=True,
            )
        except DuplicateKeyError:
            last = await self._confirmations.find_one({"_id": change.phone}, {"sent_at": 1})
            sent_at = now if last is None else last["sent_at"]
            raise TooSoon(seconds_until(sent_at + self._interval, now)) from None
        return code

    async def withdraw(self, phone: str, code: str) -> None:
        """Forget a code that could not be sent (the number may be sent another at once)."""
        await self._confirmations.delete_one({"_id": phone, "code_hash": code_hash(phone, code)})

    async def check(self, change: SubscriptionChange, code: str) -> SubscriptionChange:
        """The change as it was asked when `code` was sent (its user name and alias), if `code`
        confirms it: `WrongCode` or `TooManyAttempts` otherwise. Each call is one attempt."""
        pending = await self._confirmations.find_one_and_update(
            {
                "_id": change.phone,
                "event_source": change.event_source,
                "subscribe": change.subscribe,
                "code_hash": {"$exists": True},
                "sent_at": {"$gt": stored_now() - self.ttl},
            },
            {"$inc": {"attempts": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if pending is None:
            raise WrongCode("the code is wrong or expired; ask for a new one")
        if pending["attempts"] > self._attempts:
            raise TooManyAttempts("too many wrong codes; ask for a new one")
        if not hmac.compare_digest(pending["code_hash"], code_hash(change.phone, code)):
            raise WrongCode("the code is wrong or expired; ask for a new one")
        return SubscriptionChange(
            change.subscribe,
            change.event_source,
            change.phone,
            pending["user_name"],
            pending["alias"],
        )

    async def used(self, phone: str, code: str) -> None:
        """`code` did its work: it confirms nothing more (the send limit stays)."""
        await self._confirmations.update_one(
            {"_id": phone, "code_hash": code_hash(phone, code)}, {"$unset": {"code_hash": ""}}
        )
