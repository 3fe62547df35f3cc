"""`GET /subscribeSMS`: MobileFirst's web-subscription servlet.

`?eventSource=Adapter.Source&phoneNumber=...&userName=...&alias=...&option=...` subscribes the
number when `option` is absent or blank and unsubscribes it when `option` has any other value.
`phoneNumber` may hold digits, `+`, `-` and spaces (a national number takes the default region).
Answers 200 with `{"status": "subscribed" | "already_subscribed" | "unsubscribed" |
"not_subscribed", ...}`; a missing or malformed parameter (an event source not spelled
`Adapter.Source` among them) is 422 naming it, an undeclared event source 404, and 503 when the
database or the broker is unreachable (nothing changed then).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import structlog
from aiohttp import web
from pymongo.errors import ConnectionFailure

from twoway.broker import PublishFailed
from twoway.phone import InvalidPhoneNumber
from twoway.service import MONGO_DB, PUBLISHER, CleanupContext
from twoway.settings import TwowaySettings
from twoway.subscriptions import (
    EventSourceRegistry,
    InvalidEventSource,
    Subscriptions,
    SubscriptionStore,
    UnknownEventSource,
)
from twoway_ingress.errors import InvalidRequest, error_response

log = structlog.get_logger(__name__)

SUBSCRIPTIONS = web.AppKey("ingress_subscriptions", Subscriptions)

_PHONE_CHARACTERS = re.compile(r"[0-9+\- ]+")


@dataclass(frozen=True)
class SubscribeRequest:
    subscribe: bool
    event_source: str
    phone: str
    user_name: str | None
    alias: str | None


def _optional(query: Mapping[str, str], name: str) -> str | None:
    return query.get(name, "").strip() or None


def parse_subscribe_request(query: Mapping[str, str]) -> SubscribeRequest:
    """The request the servlet's parameters make; `InvalidRequest` naming a bad one."""
    event_source = query.get("eventSource", "").strip()
    if not event_source:
        raise InvalidRequest(
            422, "missing_field", "eventSource is required: Adapter.Source", "eventSource"
        )
    phone = query.get("phoneNumber", "")
    if not phone.strip():
        raise InvalidRequest(
            422, "missing_field", "phoneNumber is required: the number to subscribe", "phoneNumber"
        )
    if not _PHONE_CHARACTERS.fullmatch(phone):
        raise InvalidRequest(
            422,
            "invalid_field",
            "phoneNumber may hold only digits, +, - and spaces",
            "phoneNumber",
        )
    if phone.startswith(" ") and phone.lstrip()[:1].isdigit():
        # An unescaped + in a query string arrives as a space: +447... -> " 447..."
        phone = "+" + phone.lstrip()
    return SubscribeRequest(
        subscribe=not query.get("option", "").strip(),
        event_source=event_source,
        phone=phone,
        user_name=_optional(query, "userName"),
        alias=_optional(query, "alias"),
    )


async def subscribe_sms(request: web.Request) -> web.Response:
    wanted = parse_subscribe_request(request.query)
    subscriptions = request.app[SUBSCRIPTIONS]
    try:
        if wanted.subscribe:
            subscription, created = await subscriptions.subscribe(
                wanted.event_source, wanted.phone, user_id=wanted.user_name, alias=wanted.alias
            )
            status, phone = ("subscribed" if created else "already_subscribed"), subscription.phone
        else:
            removed = await subscriptions.unsubscribe(wanted.event_source, wanted.phone)
            status, phone = ("unsubscribed" if removed else "not_subscribed"), wanted.phone
    except UnknownEventSource as error:
        raise InvalidRequest(404, "unknown_event_source", str(error), "eventSource") from error
    except InvalidEventSource as error:
        raise InvalidRequest(422, "invalid_field", str(error), "eventSource") from error
    except InvalidPhoneNumber as error:
        raise InvalidRequest(422, "invalid_field", str(error), "phoneNumber") from error
    except (PublishFailed, ConnectionFailure) as error:
        log.error("subscription_not_changed", error=str(error))
        return error_response(
            503, "unavailable", "the subscription could not be changed; retry later"
        )
    log.info("web_subscription", status=status, event_source=wanted.event_source, phone=phone)
    return web.json_response(
        {"status": status, "eventSource": wanted.event_source, "phoneNumber": phone}
    )


def subscriptions_context(settings: TwowaySettings) -> CleanupContext:
    """The subscription use cases over the app's database and publisher (after both)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        db = app[MONGO_DB]
        subscriptions = Subscriptions(
            SubscriptionStore(db, settings.default_region),
            EventSourceRegistry(db),
            app[PUBLISHER],
        )
        try:
            await subscriptions.ensure_indexes()
        except ConnectionFailure as error:  # /receiveSMS must start without the database
            log.warning("subscription_indexes_not_ensured", error=str(error))
        app[SUBSCRIPTIONS] = subscriptions
        yield

    return context
