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
dialect's request(s). Right before they go out the attempt is noted in the message log, with
the `accepted` event that marks the start of the first attempt (`twoway_outbound.ledger`);
the outcome's event clears the note. success -> a `sent` event, which is also the record
that keeps a redelivery from being sent again. A redelivery that finds an attempt noted and no
outcome is in doubt, and its gateway's `in_doubt` policy decides (`twoway_outbound.in_doubt`):
send it again, or hold it (an `unknown` event, parked with `HEADER_IN_DOUBT` until a delivery
report settles it, or `in_doubt_timeout` -> `failed` and the dead-letter queue).
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

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta

import aiohttp
import structlog

from twoway import metrics
from twoway.broker import Publisher, Reject, repeat_headers
from twoway.consumed import Delivery, Headers
from twoway.gateways import DIALECTS
from twoway.gateways.config import GatewayConfig, GatewaysConfig, GatewaySecrets
from twoway.gateways.destinations import refusal
from twoway.gateways.encoding import SegmentedText, prepare
from twoway.gateways.results import SendResult
from twoway.message_log import AttemptStarted, EventRecorder
from twoway.messages import DeliveryEvent, OutboundSMS, utc_now
from twoway.ordering import KeyedSequencer
from twoway.topology import (
    HEADER_ATTEMPT,
    HEADER_IN_DOUBT,
    HEADER_PARTS_SENT,
    HEADER_RETRY_DUE,
    delay_queue_for,
    retry_queue,
)
from twoway_outbound.gateway_client import send_requests
from twoway_outbound.in_doubt import (
    Action,
    InDoubt,
    decide,
    gave_up_detail,
    held_until,
    in_flight_until,
    unknown_detail,
)
from twoway_outbound.ledger import Past, SentLedger, SentRecord
from twoway_outbound.ratelimit import RateLimiters
from twoway_outbound.recipient_caps import RecipientCaps
from twoway_outbound.retries import RetryPolicy, due_header

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

    async def handle(self, message: OutboundSMS, delivery: Delivery) -> None:
        """Handle `message`; copies of one message id, one after the other (see the ledger).

        A lost broker channel cancels the handlers of its consumer. Cut between its attempt
        note and its outcome, a send would be in doubt and held, though nothing killed outbound;
        so each handling runs to its end in a task of its own. What the channel's loss costs is
        the ack: the redelivery finds the outcome in the log."""
        handling = asyncio.ensure_future(self._one_copy_at_a_time(message, delivery))
        try:
            await asyncio.shield(handling)
        except asyncio.CancelledError:
            handling.add_done_callback(_told_without_its_consumer)
            raise

    async def _one_copy_at_a_time(self, message: OutboundSMS, delivery: Delivery) -> None:
        async with self._copies.hold(message.message_id):
            await self._handle(message, delivery)

    async def _handle(self, message: OutboundSMS, delivery: Delivery) -> None:
        gateway = self._gateways.get(message.gateway_id)
        if gateway is None:
            await self._events.record(
                message.event("failed", message.gateway_id, "unknown gateway")
            )
            raise Reject(f"unknown gateway {message.gateway_id!r}")
        now = utc_now()
        if delivery.in_doubt:
            await self._check_held(message, gateway, delivery, now)
            return
        due = delivery.retry_due
        if due is not None and due > now:  # back early from a wait longer than any delay queue
            await self._park(delivery, (due - now).total_seconds(), due)
            return
        past = await self._ledger.find(message.message_id, may_repeat=delivery.may_repeat)
        if past.sent is not None:
            sent = past.sent
            log.info("outbound_already_sent", gateway_id=sent.gateway_id)
            detail = "already sent; not sent again"
            again = message.event("sent", sent.gateway_id, detail, sent.gateway_message_id)
            await self._events.announce(again)  # the log has the send
            return
        if past.in_doubt is not None:
            in_flight = in_flight_until(past.in_doubt, gateway)
            if not past.in_doubt.held and now < in_flight:
                await self._wait_for_other_copy(delivery, gateway.id, now, in_flight)
                return
            action = decide(past.in_doubt, gateway, now)
            if not past.in_doubt.held:
                metrics.OUTBOUND_IN_DOUBT.labels(gateway=gateway.id, policy=gateway.in_doubt).inc()
            log.warning(
                "outbound_in_doubt",
                gateway_id=gateway.id,
                attempt=past.in_doubt.attempt.attempt,
                action=action,
            )
            if action != "resend":
                await self._settle_held(message, gateway, delivery, past.in_doubt, action, now)
                return
        await self._send_now(message, gateway, delivery, past, now)

    async def _send_now(
        self,
        message: OutboundSMS,
        gateway: GatewayConfig,
        delivery: Delivery,
        past: Past,
        now: datetime,
    ) -> None:
        """Send it (unless it is past its `not_after`, refused, or too long), and log how it
        went."""
        if message.not_after is not None and now > message.not_after:
            await self._events.record(
                message.event("expired", gateway.id, "past not_after; not sent")
            )
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
        attempt = delivery.attempt
        if attempt == 1 and message.priority == "reply":
            capped = await self._caps.refusal(gateway.id, message.to)
            if capped is not None:
                await self._refuse(message, gateway.id, RECIPIENT_LIMIT, capped)
                return
        accepted: tuple[DeliveryEvent, ...] = ()
        if attempt == 1 and not past.logged:
            detail = f"for {gateway.id}: {text.count} {text.encoding} segment(s)"
            accepted = (message.event("accepted", gateway.id, detail),)
        result = await self._send(gateway, message, text, delivery, accepted)
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
            await self._events.record(took, logged=accepted)
            self._ledger.remember(
                SentRecord(message.message_id, gateway.id, result.gateway_message_id)
            )
        elif result.outcome == "retry" and attempt < self._retries.max_attempts:
            await self._retry_later(message, delivery, gateway.id, attempt, result, accepted)
        else:
            failed = message.event("failed", gateway.id, detail)
            await self._events.record(failed, logged=accepted)
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
        delivery: Delivery,
        accepted: tuple[DeliveryEvent, ...],
    ) -> SendResult:
        """Wait for the gateway's rate limit, note the attempt (with `accepted`), then send what
        an earlier attempt did not."""
        dialect = DIALECTS[gateway.type]
        requests = dialect.build_requests(gateway, message, text, self._secrets[gateway.id])
        already_sent = delivery.parts_sent
        segments = text.count if len(requests) == 1 else len(requests) - already_sent
        await self._limiters.acquire(gateway.id, segments, message.priority)
        started = AttemptStarted(delivery.attempt, gateway.id, utc_now())
        await self._ledger.start(message.message_id, started, *accepted)
        result, parts_sent = await send_requests(
            self._http, dialect, requests, gateway.timeout, already_sent=already_sent
        )
        return replace(result, parts_sent=parts_sent)

    async def _retry_later(
        self,
        message: OutboundSMS,
        delivery: Delivery,
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
            expired = message.event("expired", gateway_id, reason)
            await self._events.record(expired, logged=accepted)
            raise Reject(f"expired: {reason}")
        retrying = message.event("retrying", gateway_id, f"{detail}; next in {wait:g} s")
        await self._events.record(retrying, logged=accepted)
        await self._park(
            delivery,
            wait,
            due,
            {HEADER_ATTEMPT: attempt + 1, HEADER_PARTS_SENT: result.parts_sent},
        )
        metrics.OUTBOUND_RETRIES.labels(gateway=gateway_id).inc()
        log.info("outbound_retry_scheduled", wait_seconds=wait, next_attempt=attempt + 1)

    async def _wait_for_other_copy(
        self, delivery: Delivery, gateway_id: str, now: datetime, in_flight: datetime
    ) -> None:
        """Another copy's attempt may still be running (a repeat handled by another replica):
        park this copy, marked a repeat so that it looks the message up again, until that
        attempt must have ended."""
        log.info("outbound_copy_in_flight", gateway_id=gateway_id)
        wait = (in_flight - now).total_seconds()
        await self._park(delivery, wait, in_flight, repeat_headers(repeat=True))

    async def _check_held(
        self,
        message: OutboundSMS,
        gateway: GatewayConfig,
        delivery: Delivery,
        now: datetime,
    ) -> None:
        """A held message back from its wait: settled by a delivery report meanwhile, or held
        again, or given up on."""
        due = delivery.retry_due
        if due is not None and due > now:
            await self._park(delivery, (due - now).total_seconds(), due, {HEADER_IN_DOUBT: 1})
            return
        past = await self._ledger.find(message.message_id, may_repeat=True)
        if past.in_doubt is None:
            metrics.OUTBOUND_IN_DOUBT_SETTLED.labels(gateway=gateway.id, outcome="reported").inc()
            log.info("outbound_in_doubt_settled", gateway_id=gateway.id, outcome="reported")
            if past.sent is not None:  # those counting outbound's sent/failed/expired hear of it
                detail = "in doubt until the gateway reported it delivered; not sent again"
                sent = message.event("sent", gateway.id, detail, past.sent.gateway_message_id)
                await self._events.announce(sent)  # the log has the report
            return
        action = decide(past.in_doubt, gateway, now)
        if action == "resend":  # in_doubt: resend_unreported, and the gateway never reported it
            log.warning("outbound_in_doubt_resent", gateway_id=gateway.id)
            metrics.OUTBOUND_IN_DOUBT_SETTLED.labels(gateway=gateway.id, outcome="resent").inc()
            await self._send_now(message, gateway, delivery, past, now)
            return
        await self._settle_held(message, gateway, delivery, past.in_doubt, action, now)

    async def _settle_held(
        self,
        message: OutboundSMS,
        gateway: GatewayConfig,
        delivery: Delivery,
        doubt: InDoubt,
        action: Action,
        now: datetime,
    ) -> None:
        """`hold`: an `unknown` event (the first time), then park it until `in_doubt_timeout`;
        `give_up`: a `failed` event and the dead-letter queue."""
        if action == "give_up":
            detail = gave_up_detail(doubt, gateway)
            await self._events.record(message.event("failed", gateway.id, detail))
            metrics.OUTBOUND_IN_DOUBT_SETTLED.labels(gateway=gateway.id, outcome="timeout").inc()
            raise Reject(detail)
        if not doubt.held:
            await self._events.record(
                message.event("unknown", gateway.id, unknown_detail(doubt, gateway))
            )
        due = held_until(doubt, gateway)
        await self._park(delivery, (due - now).total_seconds(), due, {HEADER_IN_DOUBT: 1})

    async def _park(
        self,
        delivery: Delivery,
        wait: float,
        due: datetime,
        headers: Headers | None = None,
    ) -> None:
        """Park a copy of `delivery` (with `headers` added) in the delay queue that brings it
        back after `wait` seconds; or, for a wait longer than any delay queue, in the longest,
        with `due` in its header, to be parked again when it comes back early. A copy is held
        (`HEADER_IN_DOUBT`) only if `headers` say so: one sent again is not."""
        delay = delay_queue_for(wait, self._retries.queue_delays)
        dropped = (HEADER_RETRY_DUE, HEADER_IN_DOUBT)
        kept = {name: value for name, value in delivery.headers.items() if name not in dropped}
        if delay < wait:
            kept[HEADER_RETRY_DUE] = due_header(due)
        await self._publisher.forward(
            delivery,
            exchange="",
            routing_key=retry_queue(self._queue, delay),
            headers={**kept, **(headers or {})},
        )


def _told_without_its_consumer(handling: asyncio.Future[None]) -> None:
    """How a handling ended after its consumer was cancelled: its message comes back and is
    handled again, so an error here (most often its events not published, the broker being
    away) is told as a warning, not left to asyncio's "exception was never retrieved"."""
    if not handling.cancelled() and (error := handling.exception()) is not None:
        log.warning(
            "outbound_handling_ended_without_its_consumer", error=f"{type(error).__name__}: {error}"
        )
