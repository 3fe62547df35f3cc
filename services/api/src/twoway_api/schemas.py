"""The api's request and response bodies (beyond the shared models of twoway.messages)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from twoway.gateways.config import GATEWAY_ID_PATTERN
from twoway.messages import EventSource, HandlerRegistration, Subscription
from twoway.subscriptions import MAX_PAGE

MAX_GATEWAY_ID = 64
"""Longer ids would not fit an AMQP routing key (255 bytes) once prefixed; no gateway has one."""
MAX_OPTIONS_DEPTH = 16
"""How deep `options` may nest (MongoDB refuses documents nested over 100 levels)."""
_INT64 = range(-(2**63), 2**63)

GatewayId = Annotated[
    str, Field(min_length=1, max_length=MAX_GATEWAY_ID, pattern=GATEWAY_ID_PATTERN)
]


def _storable(value: JsonValue, depth: int = 1) -> None:
    """Raise `ValueError` unless MongoDB can store `value`: no key with a NUL or a leading `$`,
    no integer beyond 64 bits, no deeper nesting than `MAX_OPTIONS_DEPTH`."""
    if depth > MAX_OPTIONS_DEPTH:
        raise ValueError(f"nested deeper than {MAX_OPTIONS_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if "\0" in key or key.startswith("$"):
                raise ValueError(f"{key!r}: a key may not contain NUL or start with $")
            _storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _storable(item, depth + 1)
    elif isinstance(value, int) and value not in _INT64:
        raise ValueError("an integer beyond 64 bits")


def _storable_options(options: dict[str, JsonValue]) -> dict[str, JsonValue]:
    _storable(options)
    return options


StorableOptions = Annotated[dict[str, JsonValue], AfterValidator(_storable_options)]


class Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NewSubscription(Request):
    phone: str = Field(
        min_length=1, max_length=32, description="E.164, or national in the default region"
    )
    gateway_id: GatewayId | None = Field(default=None, description="The gateway to send through")
    user_id: str | None = None
    alias: str | None = None
    options: StorableOptions | None = Field(
        default=None,
        description=f"Free-form details; keys without NUL or a leading $, nested at most "
        f"{MAX_OPTIONS_DEPTH} deep, integers within 64 bits",
    )


class NewNotification(Request):
    text: str = Field(min_length=1, max_length=1600)
    gateway_id: GatewayId | None = Field(
        default=None, description="None: each subscription's gateway"
    )
    sender: str | None = Field(
        default=None, max_length=32, description="None: the gateway's default sender"
    )
    not_after: AwareDatetime | None = Field(default=None, description="Do not send after this")


class ListQuery(Request):
    limit: int = Field(default=100, ge=1, le=MAX_PAGE, description="Items per page")
    cursor: str | None = Field(
        default=None, description="The previous page's next_cursor; absent: the first page"
    )


class EventSourceList(BaseModel):
    items: list[EventSource]


class SubscriptionList(BaseModel):
    items: list[Subscription]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null: last")


class SubscriptionCount(BaseModel):
    event_source: str
    count: int


class HandlerList(BaseModel):
    items: list[HandlerRegistration]
