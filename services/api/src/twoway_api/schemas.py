"""The api's request and response bodies (beyond the shared models of twoway.messages)."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from twoway.messages import EventSource, HandlerRegistration, Subscription
from twoway.subscriptions import MAX_PAGE


class Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NewSubscription(Request):
    phone: str = Field(
        min_length=1, max_length=32, description="E.164, or national in the default region"
    )
    gateway_id: str | None = Field(default=None, description="The gateway to send through")
    user_id: str | None = None
    alias: str | None = None
    options: dict[str, JsonValue] | None = None


class NewNotification(Request):
    text: str = Field(min_length=1, max_length=1600)
    gateway_id: str | None = Field(default=None, description="None: each subscription's gateway")
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
