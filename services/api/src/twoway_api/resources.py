"""The api's resources: event sources, their subscriptions and notifications (broadcasts), and
the handler registry. `OPERATIONS` lists every route with its OpenAPI description."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from pymongo.errors import ConnectionFailure

from twoway.broadcasts import Broadcast, Broadcasts
from twoway.broker import PublishFailed
from twoway.http_errors import InvalidRequest
from twoway.messages import EVENT_SOURCE_PATTERN, EventSource, Subscription
from twoway.phone import InvalidPhoneNumber
from twoway.registry import HandlerRegistry
from twoway.subscriptions import InvalidEventSource, Page, Subscriptions, UnknownEventSource
from twoway_api.operations import (
    ErrorBody,
    Operation,
    PathParameter,
    Response,
    json_model_response,
    parse_body,
    parse_query,
)
from twoway_api.schemas import (
    EventSourceList,
    HandlerList,
    ListQuery,
    NewNotification,
    NewSubscription,
    SubscriptionCount,
    SubscriptionList,
)

log = structlog.get_logger(__name__)

SUBSCRIPTIONS = web.AppKey("subscriptions", Subscriptions)
BROADCASTS = web.AppKey("broadcasts", Broadcasts)
HANDLER_REGISTRY = web.AppKey("handler_registry", HandlerRegistry)


@web.middleware
async def domain_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The domain's refusals as HTTP errors (rendered as JSON by `json_errors`, outside this);
    an unreachable database or broker is 503 (any other failure is `json_errors`' JSON 500)."""
    try:
        return await handler(request)
    except (InvalidRequest, web.HTTPException):
        raise
    except UnknownEventSource as error:
        raise InvalidRequest(404, "unknown_event_source", str(error), "event_source") from error
    except InvalidEventSource as error:
        raise InvalidRequest(422, "invalid_field", str(error), "event_source") from error
    except InvalidPhoneNumber as error:
        raise InvalidRequest(422, "invalid_field", f"phone: {error}", "phone") from error
    except PublishFailed as error:
        log.error("api_publish_failed", error=str(error))
        raise InvalidRequest(
            503, "broker_unavailable", "the broker did not take the change; retry later"
        ) from error
    except ConnectionFailure as error:
        log.error("api_database_unreachable", error=str(error))
        raise InvalidRequest(503, "database_unavailable", "retry later") from error


def _event_source(request: web.Request) -> str:
    return request.match_info["event_source"]


def _encode_cursor(phone: str | None) -> str | None:
    return None if phone is None else base64.urlsafe_b64encode(phone.encode()).decode()


def _decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        phone = base64.b64decode(cursor, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        phone = ""
    if not phone.startswith("+"):
        raise InvalidRequest(422, "invalid_field", "cursor: not a cursor of ours", "cursor")
    return phone


async def list_event_sources(request: web.Request) -> web.Response:
    sources = await request.app[SUBSCRIPTIONS].sources.list()
    return json_model_response(EventSourceList(items=sources))


async def get_event_source(request: web.Request) -> web.Response:
    return json_model_response(
        await request.app[SUBSCRIPTIONS].sources.require(_event_source(request))
    )


async def _declared_event_source(request: web.Request) -> str:
    """The path's event source; `InvalidEventSource` or `UnknownEventSource` unless declared."""
    source = await request.app[SUBSCRIPTIONS].sources.require(_event_source(request))
    return source.name


async def list_subscriptions(request: web.Request) -> web.Response:
    query = parse_query(request, ListQuery)
    page = await request.app[SUBSCRIPTIONS].store.list(
        await _declared_event_source(request), Page(query.limit, _decode_cursor(query.cursor))
    )
    return json_model_response(
        SubscriptionList(items=page.items, next_cursor=_encode_cursor(page.next_after))
    )


async def count_subscriptions(request: web.Request) -> web.Response:
    event_source = await _declared_event_source(request)
    count = await request.app[SUBSCRIPTIONS].store.count(event_source)
    return json_model_response(SubscriptionCount(event_source=event_source, count=count))


async def create_subscription(request: web.Request) -> web.Response:
    body = await parse_body(request, NewSubscription)
    subscription, created = await request.app[SUBSCRIPTIONS].subscribe(
        _event_source(request),
        body.phone,
        gateway_id=body.gateway_id,
        user_id=body.user_id,
        alias=body.alias,
        options=body.options,
    )
    return json_model_response(subscription, status=201 if created else 200)


def _not_subscribed(request: web.Request) -> InvalidRequest:
    return InvalidRequest(
        404,
        "not_subscribed",
        f"{request.match_info['phone']} is not subscribed to {_event_source(request)}",
        "phone",
    )


async def get_subscription(request: web.Request) -> web.Response:
    subscription = await request.app[SUBSCRIPTIONS].get_subscription(
        _event_source(request), request.match_info["phone"]
    )
    if subscription is None:
        raise _not_subscribed(request)
    return json_model_response(subscription)


async def delete_subscription(request: web.Request) -> web.Response:
    removed = await request.app[SUBSCRIPTIONS].unsubscribe(
        _event_source(request), request.match_info["phone"]
    )
    if not removed:
        raise _not_subscribed(request)
    return web.Response(status=204)


async def notify(request: web.Request) -> web.Response:
    body = await parse_body(request, NewNotification)
    broadcast = await request.app[BROADCASTS].request(
        _event_source(request),
        body.text,
        gateway_id=body.gateway_id,
        sender=body.sender,
        not_after=body.not_after,
    )
    log.info("broadcast_requested", broadcast_id=broadcast.broadcast_id)
    return json_model_response(
        broadcast, status=202, headers={"Location": f"/broadcasts/{broadcast.broadcast_id}"}
    )


async def get_broadcast(request: web.Request) -> web.Response:
    broadcast_id = request.match_info["broadcast_id"]
    broadcast = await request.app[BROADCASTS].store.get(broadcast_id)
    if broadcast is None:
        raise InvalidRequest(404, "not_found", f"no broadcast {broadcast_id}", "broadcast_id")
    return json_model_response(broadcast)


async def list_handlers(request: web.Request) -> web.Response:
    handlers = await request.app[HANDLER_REGISTRY].load_all()
    handlers.sort(key=lambda handler: (-handler.priority, handler.sequence))
    return json_model_response(HandlerList(items=handlers))


_ERROR = Response("Refused; see the error body", ErrorBody)
_UNKNOWN_SOURCE = Response("No adapter declared this event source", ErrorBody)
_MALFORMED_SOURCE = Response("Not an event source name (Adapter.Source)", ErrorBody)
PATH_PARAMETERS = {
    "event_source": PathParameter(
        "An event source, Adapter.Source (another name is refused: 422)", EVENT_SOURCE_PATTERN
    ),
    "phone": PathParameter(
        "A phone number, E.164 (+ escaped as %2B) or national in the default region",
        r"^[+(]?[0-9][0-9 ().-]*$",
        routed=True,
    ),
    "broadcast_id": PathParameter("The id POST .../notifications answered"),
}
SUBSCRIPTION_PATH = "/event-sources/{event_source}/subscriptions"


OPERATIONS: list[Operation] = [
    Operation(
        "GET",
        "/event-sources",
        list_event_sources,
        operation_id="listEventSources",
        summary="The event sources adapters declared",
        tag="event sources",
        responses={200: Response("Every declared event source", EventSourceList)},
    ),
    Operation(
        "GET",
        "/event-sources/{event_source}",
        get_event_source,
        operation_id="getEventSource",
        summary="One event source",
        tag="event sources",
        responses={
            200: Response("The event source", EventSource),
            404: _UNKNOWN_SOURCE,
            422: _MALFORMED_SOURCE,
        },
    ),
    Operation(
        "GET",
        SUBSCRIPTION_PATH,
        list_subscriptions,
        operation_id="listSubscriptions",
        summary="An event source's subscriptions, by phone number, a page at a time",
        tag="subscriptions",
        query=ListQuery,
        responses={200: Response("One page", SubscriptionList), 422: _ERROR, 404: _UNKNOWN_SOURCE},
    ),
    Operation(
        "GET",
        f"{SUBSCRIPTION_PATH}/count",
        count_subscriptions,
        operation_id="countSubscriptions",
        summary="How many numbers subscribe to an event source",
        tag="subscriptions",
        responses={
            200: Response("The count", SubscriptionCount),
            404: _UNKNOWN_SOURCE,
            422: _MALFORMED_SOURCE,
        },
    ),
    Operation(
        "POST",
        SUBSCRIPTION_PATH,
        create_subscription,
        operation_id="subscribe",
        summary="Subscribe a number (idempotent: subscribing again updates the details given)",
        tag="subscriptions",
        body=NewSubscription,
        responses={
            201: Response("Subscribed", Subscription),
            200: Response("Already subscribed (details updated)", Subscription),
            400: _ERROR,
            404: _UNKNOWN_SOURCE,
            415: _ERROR,
            422: _ERROR,
            503: Response("The broker is unreachable; nothing changed", ErrorBody),
        },
    ),
    Operation(
        "GET",
        f"{SUBSCRIPTION_PATH}/{{phone}}",
        get_subscription,
        operation_id="getSubscription",
        summary="One number's subscription (MobileFirst getSMSSubscription)",
        tag="subscriptions",
        responses={
            200: Response("The subscription", Subscription),
            404: Response("Not subscribed, or no such event source", ErrorBody),
            422: _ERROR,
        },
    ),
    Operation(
        "DELETE",
        f"{SUBSCRIPTION_PATH}/{{phone}}",
        delete_subscription,
        operation_id="unsubscribe",
        summary="Unsubscribe a number",
        tag="subscriptions",
        responses={
            204: Response("Unsubscribed"),
            404: Response("Not subscribed", ErrorBody),
            422: _ERROR,
            503: Response("The broker is unreachable; nothing changed", ErrorBody),
        },
    ),
    Operation(
        "POST",
        "/event-sources/{event_source}/notifications",
        notify,
        operation_id="notify",
        summary="Send a notification to every subscriber (a broadcast, fanned out by a worker)",
        tag="broadcasts",
        body=NewNotification,
        responses={
            202: Response("Queued; follow its progress at Location (/broadcasts/{id})", Broadcast),
            400: _ERROR,
            404: _UNKNOWN_SOURCE,
            415: _ERROR,
            422: _ERROR,
            503: Response("The broker is unreachable; the broadcast failed", ErrorBody),
        },
    ),
    Operation(
        "GET",
        "/broadcasts/{broadcast_id}",
        get_broadcast,
        operation_id="getBroadcast",
        summary="A broadcast's progress: targeted, queued, skipped opted-out, sent, failed",
        tag="broadcasts",
        responses={200: Response("The broadcast", Broadcast), 404: _ERROR},
    ),
    Operation(
        "GET",
        "/handlers",
        list_handlers,
        operation_id="listHandlers",
        summary="Every SMS event handler adapters registered, in matching order",
        tag="handlers",
        responses={200: Response("The handler registry", HandlerList)},
    ),
]
