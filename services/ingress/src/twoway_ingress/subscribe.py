"""`GET /subscribeSMS`: MobileFirst's web-subscription servlet, safe by default.

`?eventSource=Adapter.Source&phoneNumber=...&userName=...&alias=...&option=...` subscribes the
number when `option` is absent or blank and unsubscribes it when `option` has any other value.
`phoneNumber` may hold digits, `+`, `-` and spaces (a national number takes the default region).

Who may do that is `TWOWAY_SUBSCRIBE_MODE`:

- `off` (the default): every request is refused, 404 `not_enabled`.
- `gateway`: as in MobileFirst, only a caller that passes the inbound checks of the gateway
  `TWOWAY_SUBSCRIBE_GATEWAY` (the same checks as its `/gateways/<id>/inbound`: token, source
  addresses, ...; 403 otherwise). The change is made at once: 200 with `{"status": "subscribed" |
  "unsubscribed", "eventSource", "phoneNumber"}`, the state asked for, whatever it was before.
- `public`: double opt-in. A request texts the number a code ("Your code to join bank.News:
  123456") and answers 202 `{"status": "confirmation_sent", ...}`; the same request with
  `&code=123456` then makes the change and answers 200 `{"status": "confirmed", "subscribed":
  true | false, ...}` (`twoway_ingress.confirmations`: a code works for
  `TWOWAY_SUBSCRIBE_CODE_TTL_SECONDS`, `TWOWAY_SUBSCRIBE_CODE_ATTEMPTS` tries, once). Neither
  answer depends on whether the number was subscribed. A wrong, expired or used code is 422
  `invalid_code`; a code tried too often 429 `too_many_attempts`; a number is sent at most one
  code per `TWOWAY_SUBSCRIBE_CODE_INTERVAL_SECONDS`, 429 `too_soon` with Retry-After before.

In either open mode a missing or malformed parameter (an event source not spelled
`Adapter.Source` among them) is 422 naming it, an undeclared event source 404 (in public mode a
number leaves only declared sources this way: the source's name is in the text), and 503 with
Retry-After when the database or the broker is unreachable (nothing changed then).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

import structlog
from aiohttp import web
from pydantic import JsonValue
from pymongo.errors import ConnectionFailure

from twoway.broker import PublishFailed
from twoway.messages import OutboundSMS, utc_now
from twoway.phone import InvalidPhoneNumber, normalise_phone
from twoway.service import MONGO_DB, PUBLISHER, CleanupContext
from twoway.subscriptions import (
    EventSourceRegistry,
    InvalidEventSource,
    Subscriptions,
    SubscriptionStore,
    UnknownEventSource,
    check_event_source,
)
from twoway.topology import OUTBOUND_EXCHANGE, outbound_key
from twoway_ingress.confirmations import (
    Confirmations,
    SubscriptionChange,
    TooManyAttempts,
    TooSoon,
    WrongCode,
)
from twoway_ingress.errors import InvalidRequest, error_response
from twoway_ingress.gateways import ENDPOINTS, accept
from twoway_ingress.settings import IngressSettings

log = structlog.get_logger(__name__)

SUBSCRIPTIONS = web.AppKey("ingress_subscriptions", Subscriptions)
CONFIRMATIONS = web.AppKey("subscribe_confirmations", Confirmations)

Handler = Callable[[web.Request], Awaitable[web.Response]]

_PHONE_CHARACTERS = re.compile(r"[0-9+\- ]+")


@dataclass(frozen=True)
class SubscribeRequest:
    change: SubscriptionChange
    code: str | None = None
    """Public mode: the code that confirms the change; None asks for one."""


def _optional(query: Mapping[str, str], name: str) -> str | None:
    return query.get(name, "").strip() or None


def _phone(query: Mapping[str, str], default_region: str) -> str:
    phone = query.get("phoneNumber", "")
    if not phone.strip():
        raise InvalidRequest(
            422, "missing_field", "phoneNumber is required: the number to subscribe", "phoneNumber"
        )
    if not _PHONE_CHARACTERS.fullmatch(phone):
        raise InvalidRequest(
            422, "invalid_field", "phoneNumber may hold only digits, +, - and spaces", "phoneNumber"
        )
    if phone.startswith(" ") and phone.lstrip()[:1].isdigit():
        # An unescaped + in a query string arrives as a space: +447... -> " 447..."
        phone = "+" + phone.lstrip()
    try:
        return normalise_phone(phone, default_region)
    except InvalidPhoneNumber as error:
        raise InvalidRequest(422, "invalid_field", str(error), "phoneNumber") from error


def parse_subscribe_request(query: Mapping[str, str], default_region: str) -> SubscribeRequest:
    """The request the servlet's parameters make, its number in E.164; `InvalidRequest` naming
    a bad parameter."""
    event_source = query.get("eventSource", "").strip()
    if not event_source:
        raise InvalidRequest(
            422, "missing_field", "eventSource is required: Adapter.Source", "eventSource"
        )
    try:
        check_event_source(event_source)
    except InvalidEventSource as error:
        raise InvalidRequest(422, "invalid_field", str(error), "eventSource") from error
    change = SubscriptionChange(
        subscribe=not query.get("option", "").strip(),
        event_source=event_source,
        phone=_phone(query, default_region),
        user_name=_optional(query, "userName"),
        alias=_optional(query, "alias"),
    )
    return SubscribeRequest(change, _optional(query, "code"))


async def _apply(subscriptions: Subscriptions, change: SubscriptionChange) -> None:
    if change.subscribe:
        await subscriptions.subscribe(
            change.event_source, change.phone, user_id=change.user_name, alias=change.alias
        )
    else:
        await subscriptions.unsubscribe(change.event_source, change.phone)


def _answer(
    status: str, change: SubscriptionChange, http_status: int = 200, **more: JsonValue
) -> web.Response:
    log.info(
        "web_subscription",
        status=status,
        subscribe=change.subscribe,
        event_source=change.event_source,
        phone=change.phone,
    )
    return web.json_response(
        {"status": status, "eventSource": change.event_source, "phoneNumber": change.phone, **more},
        status=http_status,
    )


async def _not_enabled(_request: web.Request) -> web.Response:
    raise InvalidRequest(
        404, "not_enabled", "/subscribeSMS is not enabled here (TWOWAY_SUBSCRIBE_MODE is off)"
    )


def _answering(settings: IngressSettings, handle: Handler) -> Handler:
    """`handle`, with what stops a change answered as a JSON error."""
    retry_after = {"Retry-After": str(settings.retry_after_seconds)}

    async def handler(request: web.Request) -> web.Response:
        try:
            return await handle(request)
        except UnknownEventSource as error:
            raise InvalidRequest(404, "unknown_event_source", str(error), "eventSource") from error
        except WrongCode as error:
            raise InvalidRequest(422, "invalid_code", str(error), "code") from error
        except TooManyAttempts as error:
            return error_response(429, "too_many_attempts", str(error), "code")
        except TooSoon as error:
            return error_response(
                429,
                "too_soon",
                str(error),
                "phoneNumber",
                headers={"Retry-After": str(error.retry_after)},
            )
        except (PublishFailed, ConnectionFailure) as error:
            log.error("subscription_not_changed", error=str(error))
            return error_response(
                503,
                "unavailable",
                "the subscription could not be changed; retry later",
                headers=retry_after,
            )

    return handler


def _through_gateway(settings: IngressSettings, gateway_id: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        await accept(request, gateway_id)
        change = parse_subscribe_request(request.query, settings.default_region).change
        await _apply(request.app[SUBSCRIPTIONS], change)
        return _answer("subscribed" if change.subscribe else "unsubscribed", change)

    return handler


async def _send_code(request: web.Request, change: SubscriptionChange) -> web.Response:
    source = await request.app[SUBSCRIPTIONS].sources.require(change.event_source)
    confirmations = request.app[CONFIRMATIONS]
    code = await confirmations.start(change)
    verb = "join" if change.subscribe else "leave"
    sms = OutboundSMS(
        to=change.phone,
        text=f"Your code to {verb} {source.name}: {code}",
        not_after=utc_now() + confirmations.ttl,  # a code that can no longer work is not sent
    )
    try:
        await request.app[PUBLISHER].publish(
            sms, exchange=OUTBOUND_EXCHANGE, routing_key=outbound_key(sms.gateway_id)
        )
    except PublishFailed:
        await confirmations.withdraw(change.phone, code)
        raise
    return _answer("confirmation_sent", change, 202)


async def _confirm(request: web.Request, change: SubscriptionChange, code: str) -> web.Response:
    confirmations = request.app[CONFIRMATIONS]
    confirmed = await confirmations.check(change, code)
    await _apply(request.app[SUBSCRIPTIONS], confirmed)
    await confirmations.used(change.phone, code)
    return _answer("confirmed", change, subscribed=change.subscribe)


def _public(settings: IngressSettings) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        wanted = parse_subscribe_request(request.query, settings.default_region)
        if wanted.code is None:
            return await _send_code(request, wanted.change)
        return await _confirm(request, wanted.change, wanted.code)

    return handler


def _subscriptions_context(settings: IngressSettings) -> CleanupContext:
    """The subscription use cases (and in public mode the codes) over the app's database and
    publisher (after both)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        db = app[MONGO_DB]
        subscriptions = Subscriptions(
            SubscriptionStore(db, settings.default_region), EventSourceRegistry(db), app[PUBLISHER]
        )
        try:
            await subscriptions.ensure_indexes()
        except ConnectionFailure as error:  # /receiveSMS must start without the database
            log.warning("subscription_indexes_not_ensured", error=str(error))
        app[SUBSCRIPTIONS] = subscriptions
        if settings.subscribe_mode == "public":
            app[CONFIRMATIONS] = Confirmations(
                db,
                ttl=timedelta(seconds=settings.subscribe_code_ttl_seconds),
                interval=timedelta(seconds=settings.subscribe_code_interval_seconds),
                attempts=settings.subscribe_code_attempts,
            )
        yield

    return context


def _handler(app: web.Application, settings: IngressSettings) -> Handler:
    """What answers `/subscribeSMS` in `settings.subscribe_mode`."""
    if settings.subscribe_mode == "off":
        return _not_enabled
    if settings.subscribe_mode == "public":
        return _answering(settings, _public(settings))
    gateway_id = settings.subscribe_gateway
    if gateway_id is None or gateway_id not in app[ENDPOINTS].gateways:
        raise ValueError(f"subscribe_gateway {gateway_id!r} is not a configured gateway")
    return _answering(settings, _through_gateway(settings, gateway_id))


def add_subscribe_route(app: web.Application, settings: IngressSettings) -> None:
    """`GET /subscribeSMS` in `settings.subscribe_mode` (after the gateway routes); `ValueError`
    at start for a `subscribe_gateway` that is not configured."""
    handler = _handler(app, settings)
    if handler is not _not_enabled:
        app.cleanup_ctx.append(_subscriptions_context(settings))
    app.router.add_route("GET", "/subscribeSMS", handler)
