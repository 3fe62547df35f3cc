"""The per-recipient cap: at most `count` replies to one number in `seconds`, per gateway, from
all outbound replicas together, so that a loop between our auto-reply and another auto-responder,
or a flood of texts from one number, cannot run up a bill. Refusing one reply breaks a loop: the
other side only answers what we send.

Only replies count (`priority: reply`: answers to inbound texts and api sends); bulk messages do
not: a broadcast reaches each subscriber once, is started by an operator rather than by whoever
texts us, and counting it would add a database write per subscriber to every broadcast.

Time is cut into fixed windows of `seconds`; every replica counts the replies of a window in one
MongoDB document per gateway, number and window (`outbound_recipient_counts`, `$inc` with upsert,
expiring by TTL). Its `_id` holds a SHA-256 digest, not the number.

Most numbers get one reply in a window, so a replica counts its first reply to a number in a window
in memory only, and writes it with its second (`$inc` by two): the common reply costs no database
operation. The price is that each replica may send one reply to a number that the others' shared
count does not include yet: N replicas let at most `count + N - 1` replies through in a window
(one replica: exactly `count`). Memory holds at most `MAX_UNSHARED` numbers per gateway and
window; past that, replies are written at once.

Counts are group-committed (`twoway.batching`): a lone write costs one `find_one_and_update`;
the replies that queue up
meanwhile are counted together, one `bulk_write` and one `find` per batch (SecantusDB: about 450
single upserts/s, against 1,300 replies/s in batches of 64). A batch reads totals that may include
other replicas' later counts, so a reply near the cap can be refused that a strict order would have
let through; never more than `count` go out. A replica remembers the numbers it found over their
cap until the window ends, and refuses their further replies without asking the database: a flood
costs nothing once capped. A retry of a reply is not counted again.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from twoway.batching import GroupCommit
from twoway.gateways.destinations import RecipientLimit
from twoway.storage import Document

COUNTS_COLLECTION = "outbound_recipient_counts"
DUPLICATE_KEY = 11000


MAX_UNSHARED = 100_000
"""Numbers a replica counts in memory per gateway and window (about 150 bytes each)."""


@dataclass(frozen=True)
class _Count:
    """`n` replies to count in the window document `key`."""

    key: str
    expires_at: datetime
    n: int = 1


class WindowCounts:
    """Counts in MongoDB, written in batches: each reply learns its place in its window."""

    def __init__(self, counts: AsyncCollection[Document]) -> None:
        self._counts = counts
        self._commit: GroupCommit[_Count, int] = GroupCommit(self._count_batch)

    async def ensure_indexes(self) -> None:
        await self._counts.create_index("expires_at", expireAfterSeconds=0)

    async def add(self, key: str, expires_at: datetime, n: int = 1) -> int:
        """Count `n` more in `key`; the count up to and including these."""
        return await self._commit.submit(_Count(key, expires_at, n))

    async def _count_batch(self, items: Sequence[_Count]) -> list[int]:
        added: Counter[str] = Counter()
        for item in items:
            added[item.key] += item.n
        expiry = {item.key: item.expires_at for item in items}
        updates = {
            key: ({"_id": key}, {"$inc": {"count": n}, "$setOnInsert": {"expires_at": expiry[key]}})
            for key, n in added.items()
        }
        if len(updates) == 1:
            [(key, (query, update))] = updates.items()
            totals = {key: await self._find_and_count(query, update)}
        else:
            totals = await self._count_many(list(updates.values()))
        counted = {key: totals[key] - n for key, n in added.items()}
        places = []
        for item in items:
            counted[item.key] += item.n
            places.append(counted[item.key])
        return places

    async def _find_and_count(self, query: Document, update: Document) -> int:
        try:
            document = await self._upsert(query, update)
        except DuplicateKeyError:  # two replicas created the window at once: it exists now
            document = await self._upsert(query, update)
        return int(document["count"])

    async def _upsert(self, query: Document, update: Document) -> Document:
        document = await self._counts.find_one_and_update(
            query, update, upsert=True, return_document=ReturnDocument.AFTER
        )
        if document is None:
            raise RuntimeError("an upsert returned no document")
        return document

    async def _count_many(self, updates: list[tuple[Document, Document]]) -> dict[str, int]:
        operations = [UpdateOne(query, update, upsert=True) for query, update in updates]
        try:
            await self._counts.bulk_write(operations, ordered=False)
        except BulkWriteError as error:
            errors = error.details["writeErrors"]
            if any(item["code"] != DUPLICATE_KEY for item in errors):
                raise
            await self._counts.bulk_write([operations[item["index"]] for item in errors])
        keys = [query["_id"] for query, _ in updates]
        found = self._counts.find({"_id": {"$in": keys}}, {"count": 1})
        return {document["_id"]: int(document["count"]) async for document in found}


class RecipientCap:
    """The cap of one gateway."""

    def __init__(
        self,
        counts: WindowCounts,
        gateway_id: str,
        limit: RecipientLimit,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._counts = counts
        self._gateway_id = gateway_id
        self.limit = limit
        self._clock = clock
        self._window = -1
        self._capped: set[str] = set()
        """Numbers over the cap in `_window`, as far as this replica knows."""
        self._unshared: dict[str, int] = {}
        """Numbers this replica replied to in `_window`: 1 while that reply is counted here only,
        0 once it is written."""

    async def allows(self, recipient: str) -> bool:
        """Whether one more reply to `recipient` stays within the cap (it is counted if so)."""
        window = math.floor(self._clock() / self.limit.seconds)
        if window != self._window:
            self._window, self._capped, self._unshared = window, set(), {}
        if recipient in self._capped:
            return False
        unshared = self._unshared.get(recipient)
        if unshared is None and len(self._unshared) < MAX_UNSHARED:
            self._unshared[recipient] = 1
            return True
        if unshared is not None:
            self._unshared[recipient] = 0
        digest = hashlib.sha256(f"{self._gateway_id}\x1f{recipient}".encode()).hexdigest()
        ends = datetime.fromtimestamp((window + 1) * self.limit.seconds, UTC)
        place = await self._counts.add(
            f"{digest}:{window}", ends + timedelta(minutes=1), 1 + (unshared or 0)
        )
        if place <= self.limit.count:
            return True
        if window == self._window:
            self._capped.add(recipient)
        return False


class RecipientCaps:
    """The caps of every gateway that has a `recipient_limit`."""

    def __init__(
        self, counts: AsyncCollection[Document], limits: Mapping[str, RecipientLimit]
    ) -> None:
        self._counts = WindowCounts(counts)
        self._caps = {
            gateway_id: RecipientCap(self._counts, gateway_id, limit)
            for gateway_id, limit in limits.items()
        }

    async def ensure_indexes(self) -> None:
        await self._counts.ensure_indexes()

    async def refusal(self, gateway_id: str, recipient: str) -> str | None:
        """Why a reply to `recipient` through `gateway_id` may not go out now; None if it may."""
        cap = self._caps.get(gateway_id)
        if cap is None or await cap.allows(recipient):
            return None
        return f"over {cap.limit.count} per {cap.limit.seconds} s"
