"""Fanning one broadcast out: every subscriber of its event source gets one `bulk` OutboundSMS.

The worker streams the subscribers from one cursor in phone-number order, a batch at a time
(memory stays two batches, whatever the count), drops the numbers that opted out of the sending
short code (one query per batch), publishes the rest with publisher confirms, all of a batch at
once, and then writes a checkpoint: the batch's last phone number, the counts, a renewed lease.
The next batch and its opt-outs are read while one is published.

Exactly once, also when a worker dies mid-batch. Each message is published to `sms.outbound`
with a `BCC` to the broadcast's progress queue, so the broker puts it in `outbound.bulk` and in
the progress queue atomically; the progress queue is emptied after every checkpoint. A worker
that resumes a broadcast (after a crash: once the dead worker's lease expired) reads the progress
queue first: those numbers past the checkpoint were published already and are skipped. So
whether the crash came before, during or after a batch's confirms, or before its checkpoint,
nobody is sent the message twice and nobody is missed. Message ids are deterministic per
(broadcast, phone) besides (`broadcast_message_id`), and a slice run from a command the broker
redelivered (its worker died) marks what it publishes `HEADER_REPEAT`, so should a message be
published twice all the same, outbound finds it in its record of sent messages and drops the
copy. (A slice run from a fresh command does not: the lookup would cost a database read per
message, and the progress queue already covers that case.)

Long broadcasts are cut into slices: after `slice_seconds` the worker checkpoints, queues a
fresh `StartBroadcast` for the rest and acks its own, so no command stays unacknowledged for long
(RabbitMQ closes a channel that holds a delivery past its consumer timeout) and other broadcasts
get turns.

A slice that fails (the database or the broker unreachable, say) requeues its command, and the
next try resumes from the checkpoint. The command's last try (its `max_deliveries`th delivery,
`twoway.broker.Consumer`) marks the broadcast `failed` with the reason and dead-letters the
command, so a broadcast that cannot finish says so instead of staying `running`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncGenerator, Iterable
from datetime import timedelta
from typing import Protocol, TypeVar

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from pamqp.common import FieldValue

from twoway.broadcasts import (
    Broadcast,
    BroadcastRun,
    BroadcastStore,
    LeaseLost,
    broadcast_message_id,
)
from twoway.broker import Publisher, Reject, repeat_headers
from twoway.consumed import Delivery
from twoway.gateways.config import GatewaysConfig
from twoway.messages import OutboundSMS, StartBroadcast
from twoway.optouts import ANY_SHORT_CODE
from twoway.subscriptions import Recipient, SubscriptionStore
from twoway.topology import (
    BROADCAST_ADAPTER,
    BROADCASTS_QUEUE,
    HEADER_BCC,
    OUTBOUND_BULK_QUEUE,
    OUTBOUND_EXCHANGE,
    broadcast_progress_key,
    declare_broadcast_progress_queue,
    outbound_key,
)
from twoway_broadcaster.settings import BroadcasterSettings

log = structlog.get_logger(__name__)

T = TypeVar("T")


class OptOuts(Protocol):
    """The opt-out list as a broadcast needs it (`twoway.optouts.OptOutStore`)."""

    async def opted_out_among(self, phones: Iterable[str], short_code: str) -> set[str]: ...


class FanOut:
    """Handles `StartBroadcast` commands (one `Consumer` of `broadcaster.broadcasts`)."""

    def __init__(
        self,
        *,
        connection: AbstractRobustConnection,
        publisher: Publisher,
        broadcasts: BroadcastStore,
        subscriptions: SubscriptionStore,
        optouts: OptOuts,
        gateways: GatewaysConfig,
        settings: BroadcasterSettings,
        worker: str,
        stopping: asyncio.Event,
    ) -> None:
        self._connection = connection
        self._publisher = publisher
        self._broadcasts = broadcasts
        self._subscriptions = subscriptions
        self._optouts = optouts
        self._gateways = gateways
        self._settings = settings
        self._worker = worker
        self._stopping = stopping
        self._lease = timedelta(seconds=settings.lease_seconds)

    async def handle(self, command: StartBroadcast, delivery: Delivery) -> None:
        """Run the broadcast's next slice. An error requeues the command (the broker redelivers
        it), except on its last delivery: then the broadcast is marked failed with the reason
        and the command dead-lettered, rather than left `running` for ever."""
        with structlog.contextvars.bound_contextvars(broadcast_id=command.broadcast_id):
            try:
                await self._run(command, repeat=delivery.may_repeat)
            except Exception as error:
                if not delivery.final:
                    raise
                reason = f"gave up after {delivery.number} tries; last: {error!r}"
                await self._broadcasts.fail(command.broadcast_id, reason)
                log.error("broadcast_failed", reason=reason)
                raise Reject(reason) from error

    async def _run(self, command: StartBroadcast, *, repeat: bool) -> None:
        run = await self._claim(command)
        if run is None:
            return
        try:
            finished = await self._fan_out(run, repeat=repeat)
        except LeaseLost:
            log.warning("broadcast_taken_over")
            return
        if not finished:
            await self._broadcasts.release(command.broadcast_id, self._worker)
            await self._hand_over(command)

    async def _claim(self, command: StartBroadcast) -> BroadcastRun | None:
        """The broadcast's lease; waits while another worker holds it (it may be dead: its lease
        runs out). None if there is nothing to do, or the worker is stopping."""
        while True:
            try:
                run = await self._broadcasts.claim(command.broadcast_id, self._worker, self._lease)
            except LookupError as error:
                log.info("broadcast_not_pending", detail=str(error))
                return None
            if run is not None:
                return run
            if self._stopping.is_set():
                await self._hand_over(command)
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._settings.lease_seconds / 4)

    async def _hand_over(self, command: StartBroadcast) -> None:
        """Queue the rest of the broadcast as a fresh command (this one is acked)."""
        await self._publisher.publish(
            StartBroadcast(
                broadcast_id=command.broadcast_id, correlation_id=command.correlation_id
            ),
            exchange="",
            routing_key=BROADCASTS_QUEUE,
        )
        log.info("broadcast_handed_over")

    async def _fan_out(self, run: BroadcastRun, *, repeat: bool) -> bool:
        """Fan out from the checkpoint for one slice; whether the broadcast is complete.
        `repeat`: this slice may have run before (its messages are marked so)."""
        broadcast = run.broadcast
        broadcast_id = broadcast.broadcast_id
        deadline = asyncio.get_running_loop().time() + self._settings.slice_seconds
        async with self._connection.channel() as channel:
            # Published messages would land in the progress queue alone, silently, without it.
            await channel.get_queue(OUTBOUND_BULK_QUEUE, ensure=True)
            progress = await declare_broadcast_progress_queue(channel, broadcast_id)
            in_doubt, last_read = await _published_past_checkpoint(progress)
            if in_doubt:
                log.info("broadcast_resumed", already_published=len(in_doubt))
            if run.checkpoint is None and broadcast.started_at is None:
                targeted = await self._subscriptions.count(broadcast.event_source)
                await self._broadcasts.start(broadcast_id, self._worker, targeted)
                log.info("broadcast_started", event_source=broadcast.event_source)
            template = _template(broadcast)
            batches = _read_ahead(self._checked_batches(broadcast, run.checkpoint))
            async with contextlib.aclosing(batches):
                async for batch, opted_out in batches:
                    queued, skipped = await self._send(
                        broadcast, template, batch, opted_out, in_doubt, repeat=repeat
                    )
                    await self._broadcasts.checkpoint(
                        broadcast_id,
                        self._worker,
                        batch[-1].phone,
                        queued=queued,
                        skipped=skipped,
                        lease=self._lease,
                    )
                    if last_read is not None:  # those copies are behind the checkpoint now
                        await last_read.ack(multiple=True)
                        last_read = None
                    await progress.purge()
                    if self._stopping.is_set() or asyncio.get_running_loop().time() > deadline:
                        return False
            completed = await self._broadcasts.complete(broadcast_id, self._worker)
            await progress.delete(if_unused=False, if_empty=False)
        log.info(
            "broadcast_completed",
            queued=completed.queued,
            skipped_opted_out=completed.skipped_opted_out,
        )
        return True

    async def _checked_batches(
        self, broadcast: Broadcast, checkpoint: str | None
    ) -> AsyncGenerator[tuple[list[Recipient], set[str]], None]:
        """The subscribers after `checkpoint`, a batch at a time, each with those of the batch
        who opted out."""
        batches = self._subscriptions.recipients(
            broadcast.event_source, after=checkpoint, batch_size=self._settings.batch_size
        )
        async with contextlib.aclosing(batches):
            async for batch in batches:
                yield batch, await self._opted_out(broadcast, batch)

    async def _send(
        self,
        broadcast: Broadcast,
        template: OutboundSMS,
        batch: list[Recipient],
        opted_out: set[str],
        in_doubt: set[str],
        *,
        repeat: bool,
    ) -> tuple[int, int]:
        """Publish one batch, waiting for every confirm; (queued, skipped as opted out)."""
        headers: dict[str, FieldValue] = {
            HEADER_BCC: [broadcast_progress_key(broadcast.broadcast_id)],
            **repeat_headers(repeat),
        }
        messages: list[tuple[OutboundSMS, str]] = []
        skipped = 0
        for recipient in batch:
            if recipient.phone in in_doubt:
                continue  # published before a crash, and counted below
            if recipient.phone in opted_out:
                skipped += 1
                continue
            message = template.model_copy(
                update={
                    "message_id": broadcast_message_id(broadcast, recipient.phone),
                    "to": recipient.phone,
                    "gateway_id": recipient.gateway_id or broadcast.gateway_id,
                }
            )
            messages.append((message, outbound_key(message.gateway_id, message.priority)))
        await self._publisher.publish_many(messages, exchange=OUTBOUND_EXCHANGE, headers=headers)
        return len(batch) - skipped, skipped

    async def _opted_out(self, broadcast: Broadcast, batch: list[Recipient]) -> set[str]:
        """Those of `batch` that opted out of the short code their message would come from."""
        by_short_code: dict[str, list[str]] = defaultdict(list)
        for recipient in batch:
            gateway_id = recipient.gateway_id or broadcast.gateway_id
            by_short_code[sending_short_code(self._gateways, broadcast, gateway_id)].append(
                recipient.phone
            )
        opted_out: set[str] = set()
        for short_code, phones in by_short_code.items():
            opted_out |= await self._optouts.opted_out_among(phones, short_code)
        return opted_out


def sending_short_code(
    gateways: GatewaysConfig, broadcast: Broadcast, gateway_id: str | None
) -> str:
    """The number a broadcast's message goes out from: the broadcast's sender, else the
    gateway's default sender; unknown -> `ANY_SHORT_CODE` (every opt-out of the number applies)."""
    if broadcast.sender:
        return broadcast.sender
    gateway = gateways.get(gateway_id)
    return (gateway.default_sender if gateway else None) or ANY_SHORT_CODE


def _template(broadcast: Broadcast) -> OutboundSMS:
    """The broadcast's message, which each recipient's copy changes only `to`, id and gateway."""
    return OutboundSMS(
        correlation_id=broadcast.broadcast_id,
        to="-",
        from_=broadcast.sender,
        text=broadcast.text,
        gateway_id=broadcast.gateway_id,
        adapter=BROADCAST_ADAPTER,
        priority="bulk",
        not_after=broadcast.not_after,
    )


async def _read_ahead(items: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
    """`items`, reading the next one while the caller works on the current one (the next batch
    comes from the database while this one is published)."""
    ahead: asyncio.Task[T | None] = asyncio.ensure_future(anext(items, None))
    try:
        while (item := await ahead) is not None:
            ahead = asyncio.ensure_future(anext(items, None))
            yield item
    finally:
        ahead.cancel()
        await asyncio.wait([ahead])  # a generator cannot be closed while it runs
        await items.aclose()


async def _published_past_checkpoint(
    progress: AbstractQueue,
) -> tuple[set[str], AbstractIncomingMessage | None]:
    """The numbers the progress queue holds (published after the last checkpoint), and the
    last message read, to ack once a checkpoint covers them. Until then they stay unacked, so
    they are back in the queue if this worker dies too."""
    phones: set[str] = set()
    last: AbstractIncomingMessage | None = None
    while (message := await progress.get(no_ack=False, fail=False)) is not None:
        phones.add(OutboundSMS.model_validate_json(message.body).to)
        last = message
    return phones, last
