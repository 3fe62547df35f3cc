"""Counting what became of a broadcast's messages: outbound's `sent`, `failed` and `expired`
events for adapter `broadcast` (the broadcast's id is their correlation id).

One database write per event would cap the count rate at the database's write rate, so the
events are group-committed: those that arrive while a write is under way are added up per
broadcast and written together in one bulk `$inc`. An event is acked only after its count is
written; a worker that dies between the write and the acks counts those events again when they
are redelivered (at least once: a count can come out slightly high after a crash, never low).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from twoway.batching import GroupCommit
from twoway.broadcasts import BroadcastStore, DeliveryCount
from twoway.consumed import Delivery
from twoway.messages import DeliveryEvent


class DeliveryTally:
    def __init__(self, broadcasts: BroadcastStore, max_batch: int) -> None:
        self._broadcasts = broadcasts
        self._commit: GroupCommit[tuple[str, DeliveryCount], None] = GroupCommit(
            self._write, max_batch
        )

    async def handle(self, event: DeliveryEvent, _delivery: Delivery) -> None:
        if event.correlation_id is None or event.status not in ("sent", "failed", "expired"):
            return
        await self._commit.submit(
            (event.correlation_id, "sent" if event.status == "sent" else "failed")
        )

    async def _write(self, items: Sequence[tuple[str, DeliveryCount]]) -> list[None]:
        counts: dict[str, Counter[DeliveryCount]] = defaultdict(Counter)
        for broadcast_id, outcome in items:
            counts[broadcast_id][outcome] += 1
        await self._broadcasts.add_delivery_counts(counts)
        return [None] * len(items)
