"""The message contracts shared by every service: one pydantic model each, JSON on the wire.

Every message carries an envelope (`v`, `message_id`, `correlation_id`, `created_at`, `trace`)
and a `type` discriminator, after vumi's message envelope. Models are frozen and reject unknown
fields, so a producer and a consumer that disagree fail loudly at the edge instead of silently
dropping data.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    TypeAdapter,
    model_validator,
)
from ulid import ULID


def new_message_id() -> str:
    """A new, time-sortable message id (ULID)."""
    return str(ULID())


def derive_message_id(parent_id: str, *scope: str) -> str:
    """The id of the message that `parent_id` gives rise to in `scope`: the same however often
    it is derived, so a second run of whatever sends it (a handler re-run after a crash or a
    redelivery, a broadcast's fan-out resumed) makes a copy that outbound's record of sent
    messages recognises and drops.

    A ULID like every other message id (26 characters of Crockford base32, which message logs,
    delivery-report references and logs already take): its timestamp part is the parent's, so a
    reply sorts beside the SMS it answers and a broadcast's messages beside the broadcast, and
    its 80 random bits are a BLAKE2b hash of the parent and the scope. A parent that is not a
    ULID (an id someone chose) lends no timestamp: the hash gives that part too. The parent and
    the parts are joined by ":", with ":" and "\\" escaped inside each, so that two different
    scopes never hash the same text.
    """
    text = ":".join(_escaped(part) for part in (parent_id, *scope))
    digest = hashlib.blake2b(text.encode(), digest_size=10).digest()
    return str(ULID.from_bytes(_timestamp_bytes(parent_id) + digest))


def _escaped(part: str) -> str:
    return part.replace("\\", "\\\\").replace(":", "\\:")


@functools.lru_cache(maxsize=1024)
def _timestamp_bytes(parent_id: str) -> bytes:
    """The 48-bit timestamp of `parent_id` as a ULID, else a hash of it (parsed once per parent:
    a broadcast derives an id per subscriber)."""
    try:
        return ULID.from_str(parent_id).bytes[:6]
    except ValueError:
        return hashlib.blake2b(parent_id.encode(), digest_size=6).digest()


def utc_now() -> datetime:
    return datetime.now(UTC)


MAX_KEYWORD_LENGTH = 32
"""Longer first words are cut: a keyword is short, and it travels in logs and headers."""


def derive_keyword(text: str) -> str:
    """The keyword of an SMS: its first word, upper-cased, at most `MAX_KEYWORD_LENGTH`
    characters ("" for an empty text)."""
    words = text.split(maxsplit=1)
    return words[0][:MAX_KEYWORD_LENGTH].upper() if words else ""


class Envelope(BaseModel):
    """Fields every message carries."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    v: Literal[1] = 1
    message_id: str = Field(default_factory=new_message_id, min_length=1)
    correlation_id: str | None = None
    created_at: AwareDatetime = Field(default_factory=utc_now)
    trace: dict[str, str] = Field(default_factory=dict)


class InboundSMS(Envelope):
    """An SMS a gateway delivered to us (mobile originated)."""

    type: Literal["inbound_sms"] = "inbound_sms"
    gateway_id: str = Field(min_length=1)
    gateway_message_id: str | None = None
    sender: str = Field(min_length=1, description="E.164 where the gateway sent a phone number")
    recipient: str = Field(default="", description="The short code or number that was texted")
    text: str
    keyword: str = Field(
        default="", description="Upper-cased; the first word of text unless the gateway sent one"
    )
    params: dict[str, str] = Field(default_factory=dict, description="Every raw gateway parameter")
    received_at: AwareDatetime = Field(default_factory=utc_now)

    @model_validator(mode="before")
    @classmethod
    def _normalise_keyword(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = str(data.get("keyword") or "").strip()
            keyword = given.upper() if given else derive_keyword(str(data.get("text", "")))
            data = {**data, "keyword": keyword}
        return data

    def reply(self, text: str, *, message_id: str, adapter: str | None = None) -> OutboundSMS:
        """The answer to this SMS: back to its sender, from the number it was sent to. Its
        `message_id` is derived from this SMS's (`derive_message_id`), so that answering the
        same SMS again makes a copy outbound drops, not a second SMS."""
        return OutboundSMS(
            message_id=message_id,
            correlation_id=self.correlation_id or self.message_id,
            trace=self.trace,
            to=self.sender,
            from_=self.recipient or None,
            text=text,
            gateway_id=self.gateway_id,
            in_reply_to=self.message_id,
            adapter=adapter,
            priority="reply",
        )


class OutboundSMS(Envelope):
    """An SMS we send (mobile terminated): a reply or a notification."""

    type: Literal["outbound_sms"] = "outbound_sms"
    to: str = Field(min_length=1)
    from_: str | None = Field(default=None, alias="from", description="None: the gateway default")
    text: str
    gateway_id: str | None = Field(default=None, description="None: the routing default")
    in_reply_to: str | None = None
    adapter: str | None = None
    priority: Literal["reply", "bulk"] = "reply"
    not_after: AwareDatetime | None = Field(default=None, description="Do not send after this")

    def event(
        self,
        status: DeliveryStatus,
        gateway_id: str | None,
        detail: str = "",
        gateway_message_id: str | None = None,
    ) -> DeliveryEvent:
        """What happened to this SMS, as a `DeliveryEvent` carrying its id, adapter and trace."""
        return DeliveryEvent(
            correlation_id=self.correlation_id,
            trace=self.trace,
            outbound_id=self.message_id,
            status=status,
            gateway_id=gateway_id,
            gateway_message_id=gateway_message_id,
            adapter=self.adapter,
            detail=detail,
        )


DeliveryStatus = Literal[
    "accepted", "retrying", "sent", "unknown", "delivered", "failed", "expired"
]
"""`accepted`: outbound took the message (or the gateway reports it queued); `retrying`: an
attempt failed and another follows (the detail says which and why); `sent`: the gateway took it;
`unknown`: outbound stopped during an attempt and cannot tell whether the gateway took it (the
detail says why; it is not sent again, and a delivery report or a timeout settles it); then
`delivered`, `failed` or `expired`."""


class DeliveryEvent(Envelope):
    """What happened to an OutboundSMS. `outbound_id` is that message's `message_id`."""

    type: Literal["delivery_event"] = "delivery_event"
    outbound_id: str
    status: DeliveryStatus
    gateway_id: str | None = None
    gateway_message_id: str | None = None
    adapter: str | None = None
    detail: str = ""
    at: AwareDatetime = Field(default_factory=utc_now)


class HandlersChanged(Envelope):
    """Control message: an adapter's handler set changed; routers reload their table."""

    type: Literal["handlers_changed"] = "handlers_changed"
    adapter: str


class OptOutChanged(Envelope):
    """Control message: `phone` opted out or back in; outbound replicas re-read its opt-outs."""

    type: Literal["optout_changed"] = "optout_changed"
    phone: str = Field(min_length=1)


EVENT_SOURCE_PATTERN = r"^[A-Za-z0-9_.-]+\.[A-Za-z0-9_-]+$"
"""`Adapter.Source`, as MobileFirst names event sources (the adapter is before the last dot)."""


class Subscription(BaseModel):
    """A phone number subscribed to an event source (MobileFirst `subscribeSMS`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_source: str = Field(pattern=EVENT_SOURCE_PATTERN)
    phone: str = Field(min_length=2, description="E.164")
    gateway_id: str | None = Field(default=None, description="None: the routing default")
    user_id: str | None = None
    alias: str | None = None
    options: dict[str, JsonValue] = Field(default_factory=dict)
    created_at: AwareDatetime = Field(default_factory=utc_now)


class EventSource(BaseModel):
    """An event source an adapter declared (MobileFirst `createEventSource`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=EVENT_SOURCE_PATTERN, description="Adapter.Source")
    adapter: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""


class SubscriptionChanged(Envelope):
    """Event: a number joined or left an event source; its adapter's callbacks run on it."""

    type: Literal["subscription_changed"] = "subscription_changed"
    change: Literal["subscribed", "unsubscribed"]
    subscription: Subscription


class StartBroadcast(Envelope):
    """Command to the broadcaster: fan broadcast `broadcast_id` out (or finish it)."""

    type: Literal["start_broadcast"] = "start_broadcast"
    broadcast_id: str = Field(min_length=1)


AnyMessage = Annotated[
    InboundSMS
    | OutboundSMS
    | DeliveryEvent
    | HandlersChanged
    | OptOutChanged
    | SubscriptionChanged
    | StartBroadcast,
    Field(discriminator="type"),
]
ANY_MESSAGE: TypeAdapter[AnyMessage] = TypeAdapter(AnyMessage)


MatcherSpec = str | list[str] | dict[str, str]
"""A filter value: exact string, any-of list, or `{"regex": "..."}` (see `twoway.routing`)."""


class HandlerRegistration(BaseModel):
    """An SMS event handler an adapter registered (MobileFirst `createSMSEventHandler`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    adapter: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    handler: str = Field(min_length=1)
    filter: dict[str, MatcherSpec] = Field(default_factory=dict)
    priority: int = 0
    gateway_id: str | None = Field(default=None, description="Only SMS from this gateway")
    sequence: int = Field(default=0, description="Registration order, set by the registry")
    ordered: bool = Field(
        default=False, description="Deliver each sender's SMS one at a time, in arrival order"
    )
