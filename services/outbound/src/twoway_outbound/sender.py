"""Sending one OutboundSMS to its gateway, and deciding what happens after.

success -> a `sent` event. Timeout, connection error, 5xx or 429 -> the message waits in a delay
queue (capped exponential backoff, at least the gateway's Retry-After) and comes back, until
`max_attempts`. Any other answer, an unknown gateway or too many attempts -> a `failed` event and
the dead-letter queue with the reason. Past its `not_after` -> an `expired` event, not sent.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

import aiohttp
import structlog
from aio_pika.abc import AbstractIncomingMessage

from twoway import metrics
from twoway.broker import Publisher, Reject
from twoway.gateways import OUTBOUND_DIALECTS
from twoway.gateways.config import GatewayConfig, GatewaysConfig
from twoway.gateways.results import SendResult, classify_status
from twoway.messages import DeliveryEvent, DeliveryStatus, OutboundSMS, utc_now
from twoway.topology import EVENTS_EXCHANGE, HEADER_ATTEMPT, OUTBOUND_QUEUE, event_key, retry_queue

log = structlog.get_logger(__name__)


def retry_delay(delays: Sequence[int], attempt: int, retry_after: float | None) -> int:
    """The delay before the retry that follows `attempt` (1-based): the attempt's step of the
    backoff, raised to the first step that covers the gateway's Retry-After."""
    delay = delays[min(attempt - 1, len(delays) - 1)]
    if retry_after is not None and retry_after > delay:
        ordered = sorted(delays)
        delay = ordered[min(bisect.bisect_left(ordered, retry_after), len(ordered) - 1)]
    return delay


class Sender:
    def __init__(
        self,
        gateways: GatewaysConfig,
        secrets: Mapping[str, Mapping[str, str]],
        http: aiohttp.ClientSession,
        publisher: Publisher,
        retry_delays: Sequence[int],
        max_attempts: int,
    ) -> None:
        self._gateways = gateways
        self._secrets = secrets
        self._http = http
        self._publisher = publisher
        self._retry_delays = retry_delays
        self._max_attempts = max_attempts

    async def handle(self, message: OutboundSMS, incoming: AbstractIncomingMessage) -> None:
        gateway = self._gateways.get(message.gateway_id)
        if gateway is None:
            await self._event(message, "failed", message.gateway_id, "unknown gateway")
            raise Reject(f"unknown gateway {message.gateway_id!r}")
        if message.not_after is not None and utc_now() > message.not_after:
            await self._event(message, "expired", gateway.id, "past not_after; not sent")
            return
        attempt = int(str(incoming.headers.get(HEADER_ATTEMPT, 1)))
        result = await self.send(gateway, message)
        log.info(
            "outbound_attempt",
            gateway_id=gateway.id,
            to=message.to,
            attempt=attempt,
            outcome=result.outcome,
            detail=result.detail,
        )
        metrics.OUTBOUND_SENT.labels(gateway=gateway.id, result=result.outcome).inc()
        if result.outcome == "success":
            await self._event(message, "sent", gateway.id, result.detail, result.gateway_message_id)
        elif result.outcome == "retry" and attempt < self._max_attempts:
            await self._retry_later(incoming, attempt, result)
            metrics.OUTBOUND_RETRIES.labels(gateway=gateway.id).inc()
        else:
            await self._event(message, "failed", gateway.id, result.detail)
            raise Reject(f"send failed after {attempt} attempt(s): {result.detail}")

    async def send(self, gateway: GatewayConfig, message: OutboundSMS) -> SendResult:
        request = OUTBOUND_DIALECTS[gateway.type](gateway, message, self._secrets[gateway.id])
        as_query = request.method == "GET"
        try:
            async with self._http.request(
                request.method,
                request.url,
                params=request.params if as_query else None,
                data=None if as_query else request.params,
                timeout=aiohttp.ClientTimeout(total=gateway.timeout),
            ) as response:
                body = await response.text(errors="replace")
                return classify_status(response.status, body, response.headers.get("Retry-After"))
        except TimeoutError:
            return SendResult("retry", f"timed out after {gateway.timeout} s")
        except aiohttp.ClientError as error:
            return SendResult("retry", f"{type(error).__name__}: {error}")

    async def _retry_later(
        self, incoming: AbstractIncomingMessage, attempt: int, result: SendResult
    ) -> None:
        delay = retry_delay(self._retry_delays, attempt, result.retry_after)
        await self._publisher.publish_body(
            incoming.body,
            exchange="",
            routing_key=retry_queue(OUTBOUND_QUEUE, delay),
            headers={**incoming.headers, HEADER_ATTEMPT: attempt + 1},
            message_id=incoming.message_id,
            correlation_id=incoming.correlation_id,
            message_type=incoming.type,
        )
        log.info("outbound_retry_scheduled", delay_seconds=delay, next_attempt=attempt + 1)

    async def _event(
        self,
        message: OutboundSMS,
        status: DeliveryStatus,
        gateway_id: str | None,
        detail: str,
        gateway_message_id: str | None = None,
    ) -> None:
        event = DeliveryEvent(
            correlation_id=message.correlation_id,
            trace=message.trace,
            outbound_id=message.message_id,
            status=status,
            gateway_id=gateway_id,
            gateway_message_id=gateway_message_id,
            adapter=message.adapter,
            detail=detail,
        )
        await self._publisher.publish(
            event,
            exchange=EVENTS_EXCHANGE,
            routing_key=event_key(status, message.adapter),
            mandatory=False,
        )
