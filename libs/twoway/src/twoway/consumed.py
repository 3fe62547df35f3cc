"""A consumed message's transport state, read once from its AMQP delivery into a typed object.

What the broker and our own publishers say about a message beside its body rides in AMQP
properties and headers: which delivery of this copy it is (RabbitMQ's quorum queues count earlier
unsuccessful deliveries in `x-delivery-count`), which attempt our retries are at
(`twoway-attempt`), the handler and conversation the router chose, how many parts of a long SMS
an earlier attempt sent, whether its publisher may have published it before, when a long wait
ends, whether outbound holds it in doubt, and the trace. `Consumer` reads them here, once, and
hands handlers a `Delivery`; no handler reads a raw header.

A header of ours with a value of the wrong type (a foreign or broken publisher) raises
`BadHeader`: the consumer dead-letters the message with that reason, as it does a payload that
does not parse, rather than guess what a retry count or a due time was meant to be. A missing
header takes its default (first attempt, no handler, nothing sent, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from opentelemetry.context import Context
from pamqp.common import FieldValue

from twoway.topology import (
    HEADER_ATTEMPT,
    HEADER_CONVERSATION,
    HEADER_HANDLER,
    HEADER_IN_DOUBT,
    HEADER_PARTS_SENT,
    HEADER_REPEAT,
    HEADER_RETRY_DUE,
)
from twoway.tracing import context_from

HEADER_DELIVERY_COUNT = "x-delivery-count"
"""Set by a quorum queue on a redelivered message: its earlier unsuccessful deliveries."""

Headers = Mapping[str, FieldValue]


class BadHeader(ValueError):
    """A header of ours carries a value that is not what its publisher must write."""


@dataclass(frozen=True)
class Delivery:
    """One delivery of a consumed message: its ids, its transport state and, to copy it on
    (`Publisher.forward`), its body and headers as they came."""

    body: bytes = field(repr=False)
    headers: Headers = field(repr=False)
    """To copy on with the message (read the typed fields instead): as delivered, less the
    broker's delivery count, which counts this copy's deliveries and none of the next's
    (RabbitMQ 3.10 sets it on every delivery, 0 on the first; a copy must not rely on that)."""
    message_id: str | None
    correlation_id: str | None
    type: str | None
    redelivered: bool
    """The broker delivered this copy before (to this or another consumer)."""
    number: int
    """Which delivery of this copy this is: 1, then 2 after a failed or lost delivery, ..."""
    final: bool
    """The consumer's last try: if handling fails now, the message is dead-lettered."""
    attempt: int
    """Which attempt at handling the message this is: 1 unless a retry marked it (a copy
    parked in a delay queue by `Publisher.retry_later` or outbound's backoff)."""
    handler: str | None
    """The adapter handler the router chose."""
    conversation: str | None
    """The id of the question this SMS answers, when the router routed it as an answer."""
    parts_sent: int
    """Parts (one request each) of a long SMS that earlier attempts already sent."""
    repeat: bool
    """Published again by a publisher that cannot tell whether its first publish arrived."""
    retry_due: datetime | None
    """When a message parked for a wait longer than its delay queue's is due."""
    in_doubt: bool
    """Outbound held this message: an attempt of it may have reached the gateway."""
    trace: Context = field(repr=False)

    @property
    def may_repeat(self) -> bool:
        """Whether handling this may repeat an earlier handling of the same message: RabbitMQ
        redelivered it (a consumer died or lost its channel before acking), it is a retry, or
        its publisher marked it a repeat."""
        return self.redelivered or self.attempt > 1 or self.repeat


def read_delivery(
    body: bytes,
    headers: Headers | None,
    *,
    message_id: str | None,
    correlation_id: str | None,
    type: str | None,
    redelivered: bool,
    max_deliveries: int,
) -> Delivery:
    """The `Delivery` these AMQP properties describe; `BadHeader` if a header of ours is not
    of its type. `max_deliveries`: the deliveries a consumer tries a message."""
    headers = headers or {}
    number = (_whole(headers, HEADER_DELIVERY_COUNT) or 0) + 1
    return Delivery(
        body=body,
        headers={name: value for name, value in headers.items() if name != HEADER_DELIVERY_COUNT},
        message_id=message_id,
        correlation_id=correlation_id,
        type=type,
        redelivered=redelivered,
        number=number,
        final=number >= max_deliveries,
        attempt=_whole(headers, HEADER_ATTEMPT, minimum=1) or 1,
        handler=_text(headers, HEADER_HANDLER),
        conversation=_text(headers, HEADER_CONVERSATION),
        parts_sent=_whole(headers, HEADER_PARTS_SENT) or 0,
        repeat=HEADER_REPEAT in headers,
        retry_due=_instant(headers, HEADER_RETRY_DUE),
        in_doubt=HEADER_IN_DOUBT in headers,
        trace=context_from(headers),
    )


def _whole(headers: Headers, name: str, *, minimum: int = 0) -> int | None:
    """A whole number header (None when absent): an integer, or the digits of one as text."""
    value = headers.get(name)
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, str) and value.strip().isdecimal():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadHeader(f"{name}: {value!r} is not a whole number of at least {minimum}")
    return value


def _instant(headers: Headers, name: str) -> datetime | None:
    """A time header: Unix time in milliseconds (None when absent)."""
    milliseconds = _whole(headers, name)
    if milliseconds is None:
        return None
    try:
        return datetime.fromtimestamp(milliseconds / 1000, UTC)
    except (OverflowError, OSError, ValueError) as error:
        raise BadHeader(f"{name}: {milliseconds!r} is not a time") from error


def _text(headers: Headers, name: str) -> str | None:
    value = headers.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if not isinstance(value, str):
        raise BadHeader(f"{name}: {value!r} is not text")
    return value
