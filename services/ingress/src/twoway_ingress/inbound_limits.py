"""Inbound limits: how many MO one sender, and one gateway, may post; shared by every replica.

Each gateway's `inbound_limits` (`twoway.gateways.limits`: by default 10 MO per sender per
minute, no limit per gateway) caps what ingress accepts. A post over a limit is answered 429 with
a JSON error `rate_limited` naming the limit and `Retry-After` (the seconds until its window
ends), and nothing of it is queued. Delivery reports and `/subscribeSMS` are not limited.

Decided from memory, never waiting for the database: ingress keeps its MO path free of MongoDB
(it accepts MO while MongoDB is down) and fast (no round trip per MO).

What counts: every MO parsed from a post that passed the gateway's authenticity checks (and
every MO to `/receiveSMS`), each part of a long SMS posted part by part included (each is a post,
and a write to the part store), a gateway's retry too. A post refused for any reason is not
counted, nor is one refused at once because the broker is unreachable (503: a gateway retrying
through an outage); one whose publish then failed (503) is (rare, and on the strict side). A
post is refused when one of its counts has already reached its limit; a post carrying several
MO (an Infobip batch) is admitted or refused whole, and may take a count past its limit by its
own size rather than be refused for ever.

Windows. Time is cut into fixed windows of the limit's `seconds`, numbered from the epoch
(`floor(time / seconds)`), so every replica puts an MO in the same window whenever it started.
Counts start over at each window, so a sender may get up to twice its count in a short span
around a boundary (the end of one window, the start of the next): the price of fixed windows,
which cost one counter per sender instead of a log of times. Clocks of replicas must agree to
well within a window (NTP): a replica whose clock is off by d seconds counts its first or last d
seconds of a window into the neighbouring one.

Sharing. Each replica counts, per window, what it admitted (`admitted`) and what the other
replicas had admitted when it last asked (`others`); the decision is `admitted + others`. Every
`TWOWAY_INBOUND_LIMIT_SYNC_SECONDS` (0.25 s) a background task writes what it admitted since
its last sync (one unordered bulk `$inc` upsert, one document per count), then reads back in one
query the totals of the counts it wrote and of those it watches: the counts within reach of
their limit (half of it or more, not reached yet), so that a replica hears of the other
replicas' MO for a sender it counted much of even while it admits no more of them. A count is
written once this replica has admitted two MO under it in its window (`SHARED_FROM`): a sender
who posts once a minute, the usual case, costs no database write at all, nor does a flood of
distinct senders. So across N replicas a sender can go over its limit by what the others
admitted and this replica has not read yet: at most one MO per replica that has not shared that
sender's count, plus what the replicas admit for it within one sync interval. One replica alone
enforces its limits exactly.

Documents: collection `inbound_limit_windows`, `_id` the SHA-256 of (limit, gateway, sender,
window length, window number) so that no phone number is stored, `count`, and `expires_at` a
minute after the window ends (TTL index, created by the first sync, not at start, which must not
wait for the database). A write whose acknowledgement was lost is written again at the next
sync: counted twice, on the strict side.

MongoDB down: fail open. Decisions go on from memory, so each replica enforces the limits on
the MO it sees itself (N replicas together then admit up to N times a limit); no MO is refused or
delayed because the database is unreachable, and none is lost. The first failed sync logs the
warning `inbound_limits_not_shared`; every failed sync counts in
`twoway_inbound_limit_sync_errors_total`; `inbound_limits_shared_again` is logged when a sync
succeeds again, and the counts not written meanwhile are written then, if still in memory. A
sync waits for the database (up to the client's server-selection timeout), never a request.

Memory. A replica keeps at most `TWOWAY_INBOUND_LIMIT_KEYS` counts (50,000 by default, a few
hundred bytes each: about 20 MB), dropping the least recently used first; a count dropped
before its window ended is counted in `twoway_inbound_limit_evictions_total`, and if it had been
shared, the replica reads the total again once that sender's count is shared again (their second
MO). Each sync also drops the least recently used counts whose window has ended. A flood of
distinct senders thus costs bounded memory and no database writes, while a sender flooding stays
at the most recently used end.

Every refusal counts in `twoway_inbound_rate_limited_total{gateway,limit}` (and, like every
refusal, in `twoway_inbound_refused_total{status="429"}`); the first refusal of a count in its
window logs the warning `inbound_rate_limited` (sender masked), the rest of a flood does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple, NoReturn

import structlog
from aiohttp import web
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

from twoway import metrics
from twoway.gateways.config import GatewaysConfig
from twoway.gateways.limits import InboundLimits, Window
from twoway.http_errors import InvalidRequest
from twoway.messages import InboundSMS
from twoway.phone import mask_phone
from twoway.service import MONGO_DB, CleanupContext
from twoway.storage import Document
from twoway_ingress.settings import IngressSettings

log = structlog.get_logger(__name__)

COUNTS_COLLECTION = "inbound_limit_windows"
SHARED_FROM = 2
"""A count is written to the database from this many MO admitted under it by one replica."""
EXPIRY_GRACE = timedelta(minutes=1)
"""How long a window's document outlives the window: clock skew, and the TTL monitor's minute."""

LimitName = Literal["per_sender", "per_gateway"]


class WindowKey(NamedTuple):
    """One count: a limit's window for a sender (per_sender) or a whole gateway (sender "")."""

    limit: LimitName
    gateway_id: str
    sender: str
    seconds: int
    number: int
    """The window's number: epoch seconds // `seconds`, the same on every replica."""

    @property
    def ends_at(self) -> float:
        return float((self.number + 1) * self.seconds)

    def document_id(self) -> str:
        fields = (self.limit, self.gateway_id, self.sender, str(self.seconds), str(self.number))
        return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


@dataclass(slots=True)
class WindowCount:
    limit: int
    """The window's `count`."""
    admitted: int = 0
    """MO this replica admitted in the window."""
    written: int = 0
    """...of which the database has been told."""
    others: int = 0
    """MO the other replicas had admitted in the window, as last read."""
    warned: bool = False

    @property
    def total(self) -> int:
        return self.admitted + self.others


class Unwritten(NamedTuple):
    """A count with `increment` MO the database has not been told of."""

    key: WindowKey
    entry: WindowCount
    increment: int


class LimitExceeded(InvalidRequest):
    """429: the post is over `limit`; it may be posted again in `retry_after` seconds."""

    def __init__(self, key: WindowKey, window: Window, retry_after: int) -> None:
        whose = (
            "from one sender"
            if key.limit == "per_sender"
            else f"through gateway {key.gateway_id!r}"
        )
        super().__init__(
            429,
            "rate_limited",
            f"over the inbound limit {key.limit}: at most {window.count} SMS {whose} in "
            f"{window.seconds} s; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
        self.limit = key.limit
        self.retry_after = retry_after


class LimitCounts:
    """This replica's counts: the decisions (`admit`), and what the sync writes and reads."""

    def __init__(
        self,
        limits: Mapping[str, InboundLimits],
        *,
        max_keys: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limits = {gateway_id: _windows(gateway) for gateway_id, gateway in limits.items()}
        self._max_keys = max_keys
        self._clock = clock
        self._counts: OrderedDict[WindowKey, WindowCount] = OrderedDict()
        """Least recently used first."""
        self._unwritten: dict[WindowKey, WindowCount] = {}
        self._watched: dict[WindowKey, WindowCount] = {}
        """Shared counts within reach of their limit: their totals are read at every sync."""

    def __len__(self) -> int:
        return len(self._counts)

    def admit(self, messages: Sequence[InboundSMS]) -> None:
        """Count `messages` (one post); `LimitExceeded`, counting none, if a count they fall
        under has reached its limit."""
        now = self._clock()
        wanted: dict[WindowKey, tuple[Window, int]] = {}
        for message in messages:
            for limit, window in self._limits[message.gateway_id]:
                sender = message.sender if limit == "per_sender" else ""
                number = int(now // window.seconds)
                key = WindowKey(limit, message.gateway_id, sender, window.seconds, number)
                wanted[key] = (window, wanted.get(key, (window, 0))[1] + 1)
        counted = [
            (key, window, self._count(key, window, now), n) for key, (window, n) in wanted.items()
        ]
        for key, window, count, _ in counted:
            if count.total >= window.count:
                self._refuse(key, window, count, now)
        for key, _, count, n in counted:
            count.admitted += n
            if count.admitted >= SHARED_FROM:
                self._unwritten[key] = count
                self._watch(key, count)

    def unwritten(self) -> list[Unwritten]:
        """The counts the database should hear of now (taken off the list)."""
        batch = [
            Unwritten(key, count, count.admitted - count.written)
            for key, count in self._unwritten.items()
        ]
        self._unwritten = {}
        return batch

    def written(self, batch: Iterable[Unwritten]) -> None:
        for item in batch:
            item.entry.written += item.increment

    def not_written(self, batch: Iterable[Unwritten]) -> None:
        """Back on the list for the next sync, unless dropped from memory meanwhile."""
        for item in batch:
            if self._counts.get(item.key) is item.entry:
                self._unwritten[item.key] = item.entry

    def watched(self) -> list[WindowKey]:
        return list(self._watched)

    def merge(self, totals: Mapping[WindowKey, int]) -> None:
        """Learn the database's `totals` (every replica's MO) of counts written before."""
        for key, total in totals.items():
            count = self._counts.get(key)
            if count is not None:
                # Totals only grow within a window: an older answer never lowers what we know.
                count.others = max(count.others, total - count.written)
                self._watch(key, count)

    def forget_ended(self) -> None:
        """Drop the least recently used counts while their window has ended. Not every ended
        count: the cap bounds memory; this frees it early."""
        now = self._clock()
        for key in [key for key in self._watched if key.ends_at <= now]:
            del self._watched[key]
        while self._counts:
            key = next(iter(self._counts))
            if key.ends_at > now:
                return
            del self._counts[key]

    def _watch(self, key: WindowKey, count: WindowCount) -> None:
        if 2 * count.total >= count.limit > count.total:
            self._watched[key] = count
        else:
            self._watched.pop(key, None)

    def _count(self, key: WindowKey, window: Window, now: float) -> WindowCount:
        count = self._counts.get(key)
        if count is not None:
            self._counts.move_to_end(key)
            return count
        count = self._counts[key] = WindowCount(window.count)
        if len(self._counts) > self._max_keys:
            dropped, _ = self._counts.popitem(last=False)
            self._watched.pop(dropped, None)
            if dropped.ends_at > now:
                metrics.INBOUND_LIMIT_EVICTIONS.inc()
        return count

    def _refuse(self, key: WindowKey, window: Window, count: WindowCount, now: float) -> NoReturn:
        retry_after = max(1, math.ceil(key.ends_at - now))
        metrics.INBOUND_RATE_LIMITED.labels(gateway=key.gateway_id, limit=key.limit).inc()
        if not count.warned:
            count.warned = True
            log.warning(
                "inbound_rate_limited",
                gateway_id=key.gateway_id,
                limit=key.limit,
                sender=mask_phone(key.sender) if key.sender else None,
                count=count.total,
                retry_after=retry_after,
            )
        raise LimitExceeded(key, window, retry_after)


def _windows(limits: InboundLimits) -> tuple[tuple[LimitName, Window], ...]:
    """A gateway's limits that are on."""
    named: tuple[tuple[LimitName, Window | None], ...] = (
        ("per_sender", limits.per_sender),
        ("per_gateway", limits.per_gateway),
    )
    return tuple((name, window) for name, window in named if window is not None)


class CountSync:
    """Shares a replica's `LimitCounts` with the other replicas through MongoDB."""

    def __init__(self, counts: LimitCounts, collection: AsyncCollection[Document]) -> None:
        self._counts = counts
        self._collection = collection
        self._indexed = False
        self._failing = False
        self.syncs = 0
        """Syncs done, failed or not (what a test waits for)."""

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.sync()

    async def sync(self) -> None:
        """Write what this replica admitted since the last sync, read back the totals of those
        counts and of the watched ones, drop ended windows. A database error is logged and
        counted, never raised."""
        batch = self._counts.unwritten()
        watched = self._counts.watched()
        if batch or watched:
            try:
                written = await self._write(batch) if batch else []
                totals = await self._read({item.key for item in written}.union(watched))
            except PyMongoError as error:
                metrics.INBOUND_LIMIT_SYNC_ERRORS.inc()
                if not self._failing:
                    self._failing = True
                    log.warning("inbound_limits_not_shared", error=str(error))
            else:
                self._counts.merge(totals)
                if self._failing:
                    self._failing = False
                    log.info("inbound_limits_shared_again")
        self._counts.forget_ended()
        self.syncs += 1

    async def _write(self, batch: list[Unwritten]) -> list[Unwritten]:
        """The counts written; the others go back on the list."""
        failed: set[int] = set()
        try:
            if not self._indexed:
                await self._collection.create_index("expires_at", expireAfterSeconds=0)
                self._indexed = True
            await self._collection.bulk_write([_increment(item) for item in batch], ordered=False)
        except BulkWriteError as error:  # some written (an upsert can race another replica's)
            failed = {write_error["index"] for write_error in error.details["writeErrors"]}
        except PyMongoError:
            self._counts.not_written(batch)
            raise
        self._counts.not_written(batch[index] for index in sorted(failed))
        written = [item for index, item in enumerate(batch) if index not in failed]
        self._counts.written(written)
        return written

    async def _read(self, wanted: Iterable[WindowKey]) -> dict[WindowKey, int]:
        keys = {key.document_id(): key for key in wanted}
        cursor = self._collection.find({"_id": {"$in": list(keys)}}, {"count": True})
        return {keys[document["_id"]]: int(document["count"]) async for document in cursor}


def _increment(item: Unwritten) -> UpdateOne:
    expires_at = datetime.fromtimestamp(item.key.ends_at, UTC) + EXPIRY_GRACE
    return UpdateOne(
        {"_id": item.key.document_id()},
        {"$inc": {"count": item.increment}, "$setOnInsert": {"expires_at": expires_at}},
        upsert=True,
    )


INBOUND_LIMITS = web.AppKey("inbound_limits", LimitCounts)


def inbound_limits_context(settings: IngressSettings, gateways: GatewaysConfig) -> CleanupContext:
    """The counts (`app[INBOUND_LIMITS].admit(messages)` before publishing MO) and their sync
    task (after the MongoDB context)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        counts = LimitCounts(
            {gateway.id: gateway.inbound_limits for gateway in gateways.gateways},
            max_keys=settings.inbound_limit_keys,
        )
        app[INBOUND_LIMITS] = counts
        sync = CountSync(counts, app[MONGO_DB][COUNTS_COLLECTION])
        task = asyncio.create_task(sync.run(settings.inbound_limit_sync_seconds))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context
