"""Publishing and consuming over aio-pika, with the project's messaging defaults.

- `connect` opens a robust connection (it reconnects and restores channels and consumers).
- `Publisher` publishes with publisher confirms, `mandatory` and persistent delivery: `publish`
  returns only once the broker has the message, and raises `PublishFailed` otherwise. It caps
  every header's text at `MAX_HEADER_CHARS` (`capped_header`), whoever built the header.
- `Consumer` consumes with manual acks and a prefetch from settings: it acks a message only after
  its handler (and everything the handler published) completed; a payload or header that does not
  parse, or a handler that raises `Reject`, sends the message to the dead-letter queue with the
  reason; so does a handler that keeps failing, or a message that keeps being redelivered (it
  killed its consumer), after `max_deliveries` deliveries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, Protocol, TypeVar, cast

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError
from aiormq import spec
from opentelemetry import trace
from pamqp.common import FieldTable, FieldValue
from pydantic import ValidationError

from twoway import metrics
from twoway.consumed import BadHeader, Delivery, Headers, read_delivery
from twoway.messages import Envelope
from twoway.topology import (
    DEAD_LETTER_EXCHANGE,
    HEADER_ATTEMPT,
    HEADER_REASON,
    HEADER_REPEAT,
    retry_queue,
)
from twoway.tracing import TRACER, inject_into

log = structlog.get_logger(__name__)

PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)

MAX_HEADER_CHARS = 1000
"""The longest text one header value carries. A message's headers travel in one AMQP frame, and
a frame over the broker's `frame_max` (RabbitMQ: 128 KB) closes the whole connection; a header
built from an SMS's content (a reason quoting its keyword) must not let one SMS do that."""
_ELLIPSIS = "…"


def capped_header(value: FieldValue) -> FieldValue:
    """`value` with every text in it (also in lists and tables) cut to `MAX_HEADER_CHARS`."""
    if isinstance(value, str):
        if len(value) <= MAX_HEADER_CHARS:
            return value
        return value[: MAX_HEADER_CHARS - len(_ELLIPSIS)] + _ELLIPSIS
    if isinstance(value, bytes):
        return value[:MAX_HEADER_CHARS]
    if isinstance(value, list):
        return [capped_header(item) for item in value]
    if isinstance(value, dict):
        return {name: capped_header(item) for name, item in value.items()}
    return value


class Consumed(Protocol):
    """A consumed message as `Publisher.forward` copies it on: a `Delivery`, or the raw AMQP
    message when its headers did not parse."""

    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> Headers: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...


class PublishFailed(Exception):
    """The broker did not confirm a publish (unroutable, nacked, timed out or unreachable)."""


class Reject(Exception):
    """Raised by a handler: this message can never be handled; dead-letter it with this reason."""


async def connect(
    url: str, service: str, *, attempts: int = 30, max_delay: float = 5.0
) -> AbstractRobustConnection:
    """A robust connection (it reconnects by itself once made).

    A service may start before its broker is ready (a laptop's `make run`, a pod beside a
    restarting RabbitMQ): the first connection is retried with capped backoff before giving up.
    """
    properties: FieldTable = {"connection_name": service}
    delay = 0.5
    for attempt in range(1, attempts):
        try:
            return await aio_pika.connect_robust(url, client_properties=properties)
        except (AMQPError, ConnectionError, OSError) as error:
            log.warning("broker_unreachable", attempt=attempt, retry_in=delay, error=str(error))
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
    return await aio_pika.connect_robust(url, client_properties=properties)


class Publisher:
    """Confirmed, mandatory, persistent publishing on one channel of its own.

    Publishes go straight to the aiormq channel under aio-pika's robust channel (the current one,
    also after a reconnect), without aio-pika's per-message `Message` and `Exchange` wrappers and
    without waiting for each frame's flush before queueing the next: the broker's confirm is
    what a publish waits for. Measured on 2 cores: 4,400 -> 5,800 confirmed publishes/s.
    """

    def __init__(self, channel: AbstractChannel, timeout: float) -> None:
        self._channel = channel
        self._timeout = timeout

    @classmethod
    async def open(cls, connection: AbstractRobustConnection, confirm_timeout: float) -> Publisher:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        return cls(channel, confirm_timeout)

    @property
    def channel(self) -> AbstractChannel:
        return self._channel

    async def publish(
        self,
        message: Envelope,
        *,
        exchange: str,
        routing_key: str,
        headers: Headers | None = None,
        mandatory: bool = True,
    ) -> None:
        """Publish `message` and wait for the broker's confirm.

        `mandatory=False` is for notifications that may have no subscriber yet (status events).
        """
        await self.publish_many(
            [(message, routing_key)], exchange=exchange, headers=headers, mandatory=mandatory
        )

    async def publish_many(
        self,
        messages: Iterable[tuple[Envelope, str]],
        *,
        exchange: str,
        headers: Headers | None = None,
        mandatory: bool = True,
    ) -> None:
        """Publish every (message, routing key) of `messages`, all in flight at once, and wait
        for every confirm within one confirm timeout. `PublishFailed` if any was not confirmed
        (the others may have been)."""
        amqp_headers = _traced(headers)
        await self._publish(
            exchange,
            [
                (
                    message.model_dump_json().encode(),
                    routing_key,
                    _properties(
                        amqp_headers,
                        message.message_id,
                        message.correlation_id,
                        getattr(message, "type", None),
                    ),
                )
                for message, routing_key in messages
            ],
            mandatory,
        )

    async def publish_body(
        self,
        body: bytes,
        *,
        exchange: str,
        routing_key: str,
        headers: Headers | None = None,
        mandatory: bool = True,
        message_id: str | None = None,
        correlation_id: str | None = None,
        message_type: str | None = None,
    ) -> None:
        """Publish an already encoded message and wait for the broker's confirm."""
        properties = _properties(_traced(headers), message_id, correlation_id, message_type)
        await self._publish(exchange, [(body, routing_key, properties)], mandatory)

    async def _publish(
        self,
        exchange: str,
        frames: list[tuple[bytes, str, spec.Basic.Properties]],
        mandatory: bool,
    ) -> None:
        try:
            if self._channel.is_closed:  # closed for good: waiting would never end
                raise ChannelInvalidStateError(f"{self._channel!r} is closed")
            async with asyncio.timeout(self._timeout):  # also while a lost connection is back
                # aiormq's abstract channel lacks `wait`, which its only implementation has.
                channel = cast(aiormq.Channel, await self._channel.get_underlay_channel())
                sends = [
                    channel.basic_publish(
                        body,
                        exchange=exchange,
                        routing_key=routing_key,
                        properties=properties,
                        mandatory=mandatory,
                        wait=False,
                    )
                    for body, routing_key, properties in frames
                ]
                if len(sends) == 1:  # the common case: no task to wrap it in
                    await sends[0]
                    return
                outcomes = await asyncio.gather(*sends, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        except (DeliveryError, AMQPError, ConnectionError, TimeoutError, RuntimeError) as error:
            metrics.PUBLISH_ERRORS.labels(exchange=exchange or "(default)").inc()
            keys = repr(frames[0][1]) if len(frames) == 1 else f"of {len(frames)} messages"
            raise PublishFailed(
                f"publish to {exchange or '(default)'!r} with key {keys} failed: "
                f"{type(error).__name__}: {error}"
            ) from error

    async def dead_letter(self, consumed: Consumed, queue: str, reason: str) -> None:
        """Copy `consumed` to `queue`'s dead-letter queue, with `reason` in its headers."""
        await self.forward(
            consumed,
            exchange=DEAD_LETTER_EXCHANGE,
            routing_key=queue,
            headers={**consumed.headers, HEADER_REASON: reason},
        )
        metrics.DEAD_LETTERS.labels(queue=queue).inc()

    async def retry_later(
        self,
        consumed: Consumed,
        queue: str,
        delay_seconds: int,
        attempt: int,
        headers: Headers | None = None,
    ) -> None:
        """Park a copy of `consumed` in `queue`'s delay queue; after `delay_seconds` the broker
        puts it back into `queue`, marked as attempt number `attempt` (`Delivery.attempt`), with
        `headers` added."""
        await self.forward(
            consumed,
            exchange="",
            routing_key=retry_queue(queue, delay_seconds),
            headers={**consumed.headers, **(headers or {}), HEADER_ATTEMPT: attempt},
        )

    async def forward(
        self,
        consumed: Consumed,
        *,
        exchange: str,
        routing_key: str,
        headers: Headers | None = None,
    ) -> None:
        """Publish a consumed message on, unchanged, with its ids and the given headers."""
        await self.publish_body(
            consumed.body,
            exchange=exchange,
            routing_key=routing_key,
            headers=headers,
            message_id=consumed.message_id,
            correlation_id=consumed.correlation_id,
            message_type=consumed.type,
        )


def _traced(headers: Headers | None) -> FieldTable:
    """`headers`, capped, with the current trace context added (`traceparent`, `tracestate`)."""
    amqp_headers = {name: capped_header(value) for name, value in (headers or {}).items()}
    inject_into(amqp_headers)
    return amqp_headers


def _properties(
    headers: FieldTable,
    message_id: str | None,
    correlation_id: str | None,
    message_type: str | None,
) -> spec.Basic.Properties:
    """A persistent JSON message's AMQP properties."""
    return spec.Basic.Properties(
        content_type="application/json",
        delivery_mode=PERSISTENT,
        headers=headers,
        message_id=message_id,
        correlation_id=correlation_id,
        message_type=message_type,
    )


def repeat_headers(repeat: bool) -> dict[str, FieldValue]:
    """The headers that mark a message published by a handling that may repeat an earlier one
    (`Delivery.may_repeat`), so that outbound looks it up in its record of sent messages rather
    than sending it a second time."""
    return {HEADER_REPEAT: True} if repeat else {}


M = TypeVar("M", bound=Envelope)
Handle = Callable[[M, Delivery], Awaitable[None]]


class Consumer(Generic[M]):
    """Consumes one queue: decodes each message as `model`, runs `handle`, then acks.

    `handle` gets the message and its `Delivery` (ids, attempt, handler, ... read once from the
    AMQP delivery, `twoway.consumed`). Outcomes:
    - handler returns -> ack;
    - payload or one of our headers invalid, or handler raises `Reject` -> copied to the
      dead-letter queue with the reason, then acked;
    - handler raises anything else -> nack with requeue (a transient fault such as a lost
      database connection), unless this was the message's `max_deliveries`th delivery: then
      dead-lettered with "failed N times; last: <error>";
    - a message delivered more than `max_deliveries` times (each delivery before ended without an
      ack: its handling killed the process, or the channel was lost) -> dead-lettered unhandled
      with "redelivered N times without an outcome". The broker counts deliveries
      (`x-delivery-count`); its own `x-delivery-limit` (`DELIVERY_LIMIT`) stays behind as a
      backstop, without our reason.
    Deliberate retries (`Publisher.retry_later`, outbound's backoff) park a new copy and ack this
    one: they count in the copy's `attempt`, never in its deliveries.
    """

    def __init__(
        self,
        queue: AbstractQueue,
        model: type[M],
        handle: Handle[M],
        publisher: Publisher,
        *,
        max_deliveries: int,
    ) -> None:
        self._queue = queue
        self._model = model
        self._handle = handle
        self._publisher = publisher
        self._max_deliveries = max_deliveries
        self._consumer_tag: str | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def queue_name(self) -> str:
        return self._queue.name

    async def start(self) -> None:
        self._consumer_tag = await self._queue.consume(self._on_message)

    async def stop(self, grace: float) -> None:
        """Stop taking messages, and wait up to `grace` seconds for those in flight."""
        if self._consumer_tag is not None:
            try:
                await self._queue.cancel(self._consumer_tag)
            except (AMQPError, ConnectionError, RuntimeError) as error:
                log.warning("consumer_cancel_failed", queue=self.queue_name, error=str(error))
            self._consumer_tag = None
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            log.warning("in_flight_abandoned", queue=self.queue_name, count=self._in_flight)

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        self._in_flight += 1
        self._idle.clear()
        try:
            with structlog.contextvars.bound_contextvars(
                message_id=incoming.message_id,
                correlation_id=incoming.correlation_id or incoming.message_id,
            ):
                await self._process(incoming)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _process(self, incoming: AbstractIncomingMessage) -> None:
        try:
            delivery = read_delivery(
                incoming.body,
                incoming.headers,
                message_id=incoming.message_id,
                correlation_id=incoming.correlation_id,
                type=incoming.type,
                redelivered=bool(incoming.redelivered),
                max_deliveries=self._max_deliveries,
            )
        except BadHeader as error:
            await self._reject(incoming, incoming, f"bad header {error}")
            return
        with TRACER.start_as_current_span(
            f"{self.queue_name} process", context=delivery.trace, kind=trace.SpanKind.CONSUMER
        ):
            await self._handle_delivery(incoming, delivery)

    async def _handle_delivery(self, incoming: AbstractIncomingMessage, delivery: Delivery) -> None:
        queue = self.queue_name
        if delivery.number > self._max_deliveries:
            metrics.CONSUME_GIVEN_UP.labels(queue=queue, cause="redelivered").inc()
            reason = f"redelivered {delivery.number - 1} times without an outcome"
            await self._reject(incoming, delivery, reason)
            return
        try:
            message = self._model.model_validate_json(incoming.body)
        except ValidationError as error:
            await self._reject(incoming, delivery, f"bad payload: {error}")
            return
        try:
            await self._handle(message, delivery)
        except Reject as error:
            await self._reject(incoming, delivery, str(error))
        except Exception as error:
            log.exception("handler_failed", queue=queue, delivery=delivery.number, error=str(error))
            if delivery.final:
                metrics.CONSUME_GIVEN_UP.labels(queue=queue, cause="failed").inc()
                reason = f"failed {delivery.number} times; last: {type(error).__name__}: {error}"
                await self._reject(incoming, delivery, reason)
            else:
                metrics.CONSUME_ERRORS.labels(queue=queue).inc()
                await incoming.nack(requeue=True)
        else:
            await incoming.ack()
            metrics.CONSUMED.labels(queue=queue).inc()

    async def _reject(self, incoming: AbstractIncomingMessage, copy: Consumed, reason: str) -> None:
        """Dead-letter `copy` of `incoming` with `reason`, then ack `incoming`."""
        queue = self.queue_name
        log.warning("message_dead_lettered", queue=queue, reason=reason)
        try:
            await self._publisher.dead_letter(copy, queue, reason)
        except PublishFailed:
            # The queue's own dead-letter exchange keeps it, without our reason header.
            await incoming.nack(requeue=False)
        else:
            await incoming.ack()
