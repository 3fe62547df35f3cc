"""Sending one OutboundSMS to its gateway, in its dialect, and deciding what happens after.

Who may be texted comes first: the gateway's destination policy (`twoway.gateways.destinations`:
countries and number types) and, on a reply's first attempt, its per-recipient cap
(`twoway_outbound.recipient_caps`). A refused message gets a `failed` event, detail
`destination_refused: <why>` (`premium_rate`, `country`, `invalid`, ...) or
`recipient_limit: <why>`, and is acked, not dead-lettered: it would be refused again, and whoever
makes us text such numbers should not fill the dead-letter queue.

The text is transliterated (if the gateway says so) and segmented; longer than the gateway's
`max_segments` -> a `failed` event and the dead-letter queue. The send waits for the gateway's
rate limit (segments per second, shared by every replica; replies first), then goes out as the
dialect's request(s); an `accepted` event marks the start of its first attempt (logged together
with that attempt's outcome, one write). success -> a `sent` event, which is also the record
that keeps a redelivery from being sent again (`twoway_outbound.ledger`).
Timeout, connection error, 5xx or 429 (or the dialect's own "try again") -> a `retrying` event
saying what failed, and the message waits in a delay queue (jittered, capped exponential backoff,
at least the gateway's Retry-After: `twoway_outbound.retries`) and comes back, until
`max_attempts`; parts already sent are not sent again. A retry that would come after the
message's deadline (its maximum age, or `not_after`) -> an `expired` event and the dead-letter
queue with the reason. Any other answer, an unknown gateway or too many attempts -> a `failed`
event and the dead-letter queue with the reason. Past its `not_after` -> an `expired` event, not
sent. Every event is written to the message log, then published on `sms.events`, before the
message is acked (`twoway.message_log.EventRecorder`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta

import aiohttp
import structlog
from aio_pika.abc import AbstractIncomingMessage

from twoway import metrics
from twoway.broker import Publisher, Reject, attempt_of, may_repeat
from twoway.gateways import DIALECTS
from twoway.gateways.config import GatewayConfig, GatewaysConfig, GatewaySecrets
from twoway.gateways.destinations import refusal
from twoway.gateways.encoding import SegmentedText, prepare
from twoway.gateways.results import SendResult
from twoway.message_log import EventRecorder
from twoway.messages import DeliveryEvent, OutboundSMS, utc_now
from twoway.ordering import KeyedSequencer
from twoway.topology import (
    HEADER_ATTEMPT,
    HEADER_PARTS_SENT,
    HEADER_RETRY_DUE,
    delay_queue_for,
    retry_queue,
)
from twoway_outbound.gateway_client import send_requests
from twoway_outbound.ledger import SentLedger, SentRecord
from twoway_outbound.ratelimit import RateLimiters
from twoway_outbound.recipient_caps import RecipientCaps
from twoway_outbound.retries import RetryPolicy, due_header, due_time

log = structlog.get_logger(__name__)

DESTINATION_REFUSED = "destination_refused"
RECIPIENT_LIMIT = "recipient_limit"


class Sender:
    """Sends the messages of one queue (`outbound.send` for replies, `outbound.bulk`)."""

    def __init__(
        self,
        queue: str,
        gateways: GatewaysConfig,
        secrets: Mapping[str, GatewaySecrets],
        http: aiohttp.ClientSession,
        publisher: Publisher,
        events: EventRecorder,
        ledger: SentLedger,
        limiters: RateLimiters,
        caps: RecipientCaps,
        retries: RetryPolicy,
        default_region: str,
    ) -> None:
        self._queue = queue
        self._gateways = gateways
        self._secrets = secrets
        self._http = http
        self._publisher = publisher
        self._events = events
        self._ledger = ledger
        self._limiters = limiters
        self._caps = caps
        self._retries = retries
        self._default_region = default_region
        self._copies = KeyedSequencer()

    async def handle(self, message: OutboundSMS, incoming: AbstractIncomingMessage) -> None:
        """Handle `message`; copies of one message id, one after the other (see the ledger)."""
        async with self._copies.hold(message.message_id):
            await self._handle(message, incoming)

    async def _handle(self, message: OutboundSMS, incoming: AbstractIncomingMessage) -> None:
        gateway = self._gateways.get(message.gateway_id)
        if gateway is None:
            await self._events.record(
                message.event("failed", message.gateway_id, "unknown gateway")
            )
            raise Reject(f"unknown gateway {message.gateway_id!r}")
        now = utc_now()
        if message.not_after is not None and now > message.not_after:
            await self._events.record(
                message.event("expired", gateway.id, "past not_after; not sent")
            )
            return
        due = due_time(incoming)
        if due is not None and due > now:  # back early from a wait longer than any delay queue
            await self._park(incoming, (due - now).total_seconds(), due)
            return
        sent = await self._ledger.find(message.message_id, may_repeat=may_repeat(incoming))
        if sent is not None:
            log.info("outbound_already_sent", gateway_id=sent.gateway_id)
            detail = "already sent; not sent again"
            again = message.event("sent", sent.gateway_id, detail, sent.gateway_message_id)
            await self._events.announce(again)  # the log has the send
            return
        refused = refusal(gateway.destinations, message.to, self._default_region)
        if refused is not None:
            await self._refuse(message, gateway.id, DESTINATION_REFUSED, refused)
            return
        text = prepare(message.text, transliteration=gateway.transliterate)
        if text.count > gateway.max_segments:
            detail = (
                f"too long: {text.count} {text.encoding} segments, "
                f"gateway {gateway.id} allows {gateway.max_segments}"
            )
            await self._events.record(message.event("failed", gateway.id, detail))
            raise Reject(detail)
        attempt = attempt_of(incoming)
        if attempt == 1 and message.priority == "reply":
            capped = await self._caps.refusal(gateway.id, message.to)
            if capped is not None:
                await self._refuse(message, gateway.id, RECIPIENT_LIMIT, capped)
                return
        accepted: tuple[DeliveryEvent, ...] = ()
        if attempt == 1 and not incoming.redelivered:
            detail = f"for {gateway.id}: {text.count} {text.encoding} segment(s)"
            accepted = (message.event("accepted", gateway.id, detail),)
        result = await self._send(gateway, message, text, incoming)
        log.info(
            "outbound_attempt",
            gateway_id=gateway.id,
            to=message.to,
            attempt=attempt,
            segments=text.count,
            outcome=result.outcome,
            detail=result.detail,
        )
        metrics.OUTBOUND_SENT.labels(gateway=gateway.id, result=result.outcome).inc()
        detail = f"attempt {attempt}: {result.detail}"
        if result.outcome == "success":
            took = message.event("sent", gateway.id, detail, result.gateway_message_id)
            await self._events.record(*accepted, took)
            self._ledger.remember(
                SentRecord(message.message_id, gateway.id, result.gateway_message_id)
            )
        elif result.outcome == "retry" and attempt < self._retries.max_attempts:
            await self._retry_later(message, incoming, gateway.id, attempt, result, accepted)
        else:
            await self._events.record(*accepted, message.event("failed", gateway.id, detail))
            raise Reject(f"send failed after {attempt} attempt(s): {result.detail}")

    async def _refuse(self, message: OutboundSMS, gateway_id: str, rule: str, why: str) -> None:
        """A `failed` event `<rule>: <why>`; the message is acked, not dead-lettered."""
        await self._events.record(message.event("failed", gateway_id, f"{rule}: {why}"))
        metrics.OUTBOUND_SENT.labels(gateway=gateway_id, result=rule).inc()
        log.info("outbound_refused", gateway_id=gateway_id, to=message.to, rule=rule, reason=why)

    async def _send(
        self,
        gateway: GatewayConfig,
        message: OutboundSMS,
        text: SegmentedText,
        incoming: AbstractIncomingMessage,
    ) -> SendResult:
        """Wait for the gateway's rate limit, then send what an earlier attempt did not."""
        dialect = DIALECTS[gateway.type]
        requests = dialect.build_requests(gateway, message, text, self._secrets[gateway.id])
        already_sent = int(str(incoming.headers.get(HEADER_PARTS_SENT, 0)))
        segments = text.count if len(requests) == 1 else len(requests) - already_sent
        await self._limiters.acquire(gateway.id, segments, message.priority)
        result, parts_sent = await send_requests(
            self._http, dialect, requests, gateway.timeout, already_sent=already_sent
        )
        return replace(result, parts_sent=parts_sent)

    async def _retry_later(
        self,
        message: OutboundSMS,
        incoming: AbstractIncomingMessage,
        gateway_id: str,
        attempt: int,
        result: SendResult,
        accepted: tuple[DeliveryEvent, ...],
    ) -> None:
        """Park the message for its next attempt, or expire it if that would be too late
        (`accepted`: the message's `accepted` event, on its first attempt, to log with it)."""
        wait = self._retries.wait(attempt, result.retry_after)
        due = utc_now() + timedelta(seconds=wait)
        deadline, limit = self._retries.deadline(message)
        detail = f"attempt {attempt}: {result.detail}"
        if due > deadline:
            reason = f"{detail}; not retried: a retry in {wait:g} s would pass its {limit}"
            await self._events.record(*accepted, message.event("expired", gateway_id, reason))
            raise Reject(f"expired: {reason}")
        retrying = message.event("retrying", gateway_id, f"{detail}; next in {wait:g} s")
        await self._events.record(*accepted, retrying)
        await self._park(
            incoming,
            wait,
            due,
            {HEADER_ATTEMPT: attempt + 1, HEADER_PARTS_SENT: result.parts_sent},
        )
        metrics.OUTBOUND_RETRIES.labels(gateway=gateway_id).inc()
        log.info("outbound_retry_scheduled", wait_seconds=wait, next_attempt=attempt + 1)

    async def _park(
        self,
        incoming: AbstractIncomingMessage,
        wait: float,
        due: datetime,
        headers: Mapping[str, int] | None = None,
    ) -> None:
        """Park a copy of `incoming` (with `headers` added) in the delay queue that brings it
        back after `wait` seconds; or, for a wait longer than any delay queue, in the longest,
        with `due` in its header, to be parked again when it comes back early."""
        delay = delay_queue_for(wait, self._retries.queue_delays)
        kept = {name: value for name, value in incoming.headers.items() if name != HEADER_RETRY_DUE}
        if delay < wait:
            kept[HEADER_RETRY_DUE] = due_header(due)
        await self._publisher.forward(
            incoming,
            exchange="",
            routing_key=retry_queue(self._queue, delay),
            headers={**kept, **(headers or {})},
        )
