"""Long MO that a gateway posts part by part: what a dialect says about one part.

A long (concatenated) SMS travels as parts whose user data header says "part i of n of reference
r". Most gateways join the parts before they post; some (Vonage) post each part on its own with
those three numbers. A dialect whose gateway does that exposes, beside `parse_inbound`,

    def message_part(gateway: GatewayConfig, request: WebhookRequest) -> MessagePart | None

(None: the post is a whole SMS), built with `read_part` from the gateway's field names. Ingress
then keeps the parts until the last one arrives and publishes one `InboundSMS` with the whole
text (`twoway_ingress.long_messages`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

from twoway.gateways.base import InvalidWebhook, WebhookRequest
from twoway.gateways.config import GatewayConfig

MAX_PARTS = 255
"""The user data header counts parts in one octet."""

PartReader = Callable[[GatewayConfig, WebhookRequest], "MessagePart | None"]


@dataclass(frozen=True)
class MessagePart:
    """Part `number` (from 1) of the `total` parts of the long SMS the sender's handset calls
    `reference`."""

    reference: str
    number: int
    total: int


class InvalidPart(InvalidWebhook):
    """A part's field that is missing or malformed; ingress names `field` in its 4xx answer."""

    def __init__(self, field: str, message: str, *, code: str = "invalid_field") -> None:
        super().__init__(message, code=code)
        self.field = field


def _count(fields: Mapping[str, str], name: str, most: int, most_name: str) -> int:
    value = fields.get(name, "").strip()
    if not value:
        raise InvalidPart(name, f"{name} is required in a part of a long SMS", code="missing_field")
    if not (value.isascii() and value.isdigit()):
        raise InvalidPart(name, f"{name} must be a whole number, not {value[:20]!r}")
    number = int(value)
    if not 1 <= number <= most:
        raise InvalidPart(name, f"{name} must be from 1 to {most} ({most_name}), not {number}")
    return number


def read_part(fields: Mapping[str, str], *, reference: str, number: str, total: str) -> MessagePart:
    """The part that `fields` describe under these field names; `InvalidPart` naming the field
    that is missing, not a number, or out of range (a part number above the total)."""
    name = fields.get(reference, "").strip()
    if not name:
        raise InvalidPart(
            reference, f"{reference} is required in a part of a long SMS", code="missing_field"
        )
    count = _count(fields, total, MAX_PARTS, "the most parts an SMS has")
    return MessagePart(name, _count(fields, number, count, total), count)


def part_reader(dialect: object) -> PartReader | None:
    """The dialect's `message_part`; None for a dialect whose gateway joins long SMS itself."""
    reader = getattr(dialect, "message_part", None)
    return cast(PartReader, reader) if callable(reader) else None
