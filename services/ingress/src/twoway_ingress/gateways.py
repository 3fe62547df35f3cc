"""`/gateways/{gateway_id}/inbound` and `/gateways/{gateway_id}/status`: each gateway's dialect.

A gateway posts MO (inbound) or delivery reports (status) in its own shape; its dialect
(`twoway.gateways.DIALECTS`) parses them into `InboundSMS` (to `sms.inbound`) or `DeliveryEvent`
(written to the message log, then published on `sms.events`). Answers: 404 JSON for an unknown
gateway; 403 when the post fails the gateway's authenticity checks, or a delivery report's
reference is not one we signed for this gateway (`ForgedReference`: none of the post's reports is
logged or published); each 403 is logged with the reason, never the body. 400/422 JSON for a post
we cannot understand; 429 JSON with Retry-After for MO over the gateway's inbound limits
(`twoway_ingress.inbound_limits`); 503 when the broker did not confirm (for a whole MO at once,
and uncounted by the inbound limits, while the broker is unreachable), or for a delivery report
when the database is unreachable (the gateway retries); otherwise the answer the gateway expects
(an empty body for Kannel, so that it sends no reply SMS; empty TwiML for Twilio), only once every
message of the post is confirmed.

A part of a long SMS (a dialect's `message_part`, Vonage's `concat` fields) is answered once it
is stored in MongoDB (503 while it cannot be; the broker is not needed); the post that completes
the set publishes the whole SMS (`twoway_ingress.long_messages`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import TypeVar
from urllib.parse import parse_qsl

import structlog
from aiohttp import web
from pymongo.errors import ConnectionFailure

from twoway import metrics
from twoway.broker import PublishFailed
from twoway.gateways import DIALECTS, Dialect
from twoway.gateways.authenticity import check_configuration, refusal
from twoway.gateways.base import ForgedReference, InvalidWebhook, WebhookAnswer, WebhookRequest
from twoway.gateways.config import GatewayConfig, GatewaysConfig, GatewaySecrets
from twoway.gateways.parts import MessagePart, part_reader
from twoway.logs import bound_message_ids
from twoway.message_log import LOG_COLLECTION, MessageLog
from twoway.messages import DeliveryEvent, Envelope, InboundSMS
from twoway.service import MONGO_DB, PUBLISHER
from twoway.topology import EVENTS_EXCHANGE, INBOUND_EXCHANGE, event_key, inbound_key
from twoway_ingress.errors import InvalidRequest, error_response, refusing_malformed_bodies
from twoway_ingress.inbound_limits import INBOUND_LIMITS
from twoway_ingress.long_messages import LONG_MESSAGES, StillAssembling
from twoway_ingress.settings import IngressSettings

log = structlog.get_logger(__name__)

FORM_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data"

T = TypeVar("T")


@dataclass(frozen=True)
class Gateway:
    config: GatewayConfig
    dialect: Dialect
    secrets: GatewaySecrets


Network = IPv4Network | IPv6Network


@dataclass(frozen=True)
class GatewayEndpoints:
    gateways: dict[str, Gateway]
    settings: IngressSettings
    trusted_proxies: tuple[Network, ...]
    """`TWOWAY_TRUSTED_PROXIES`: the peers whose X-Forwarded-For, -Proto and -Host are believed."""


ENDPOINTS = web.AppKey("gateway_endpoints", GatewayEndpoints)
MESSAGE_LOG = web.AppKey("message_log", MessageLog)


async def message_log_context(app: web.Application) -> AsyncIterator[None]:
    """The message log the delivery reports go to (after the database's context)."""
    app[MESSAGE_LOG] = MessageLog(app[MONGO_DB][LOG_COLLECTION])
    yield


def _is_trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        return any(ip_address(address) in network for network in proxies)
    except ValueError:
        return False


def _forwarded(request: web.Request, header: str, proxies: Sequence[Network]) -> list[str]:
    """The comma-separated values of an X-Forwarded-* header, the client's side first; none
    unless the peer is a trusted proxy (anyone else could write anything there)."""
    if not _is_trusted(request.remote or "", proxies):
        return []
    values = (value.strip() for value in request.headers.get(header, "").split(","))
    return [value for value in values if value]


def _client_address(request: web.Request, proxies: Sequence[Network]) -> str:
    """The peer's address; behind trusted proxies, the last X-Forwarded-For hop that is not one
    of them (the first hop if all are: a client inside a trusted network)."""
    hops = _forwarded(request, "X-Forwarded-For", proxies)
    untrusted = [hop for hop in hops if not _is_trusted(hop, proxies)]
    return untrusted[-1] if untrusted else next(iter(hops), request.remote or "")


def public_url(request: web.Request, proxies: Sequence[Network]) -> str:
    """The URL the gateway called, path as sent; scheme and host as a trusted proxy forwarded
    them (X-Forwarded-Proto, X-Forwarded-Host), else as this request came."""
    scheme = next(iter(_forwarded(request, "X-Forwarded-Proto", proxies)), request.scheme)
    host = next(iter(_forwarded(request, "X-Forwarded-Host", proxies)), request.host)
    return f"{scheme}://{host}{request.raw_path}"


async def read_webhook(request: web.Request, proxies: Sequence[Network]) -> WebhookRequest:
    """The post as a dialect reads it. A multipart form (MobileFirst gateways may send one) keeps
    its text fields; its raw body is not kept, since no gateway signs one."""
    charset = request.charset or "utf-8"
    form: tuple[tuple[str, str], ...] = ()
    body = b""
    if request.content_type == MULTIPART_TYPE:
        with refusing_malformed_bodies():
            parts = await request.post()
        form = tuple((key, value) for key, value in parts.items() if isinstance(value, str))
    elif request.body_exists:
        body = await request.read()
    if request.content_type == FORM_TYPE and body:
        with refusing_malformed_bodies():
            form = tuple(parse_qsl(body.decode(charset), keep_blank_values=True))
    return WebhookRequest(
        method=request.method,
        url=public_url(request, proxies),
        headers={name.lower(): value for name, value in request.headers.items()},
        query=tuple(request.query.items()),
        form=form,
        body=body,
        content_type=request.content_type,
        charset=charset,
        remote=_client_address(request, proxies),
    )


async def accept(request: web.Request, gateway_id: str) -> tuple[Gateway, WebhookRequest]:
    """The gateway `gateway_id` and this request as its post, having passed every one of the
    gateway's inbound checks; 404 or 403 otherwise."""
    endpoints = request.app[ENDPOINTS]
    gateway = endpoints.gateways.get(gateway_id)
    if gateway is None:
        raise InvalidRequest(404, "unknown_gateway", f"no gateway {gateway_id!r} is configured")
    webhook = await read_webhook(request, endpoints.trusted_proxies)
    reason = refusal(gateway.config, gateway.dialect, webhook, gateway.secrets)
    if reason is not None:
        log.warning(
            "gateway_post_refused", gateway_id=gateway_id, reason=reason, remote=webhook.remote
        )
        raise InvalidRequest(403, "forbidden", "this post is not from the gateway")
    if gateway.config.inbound.open:
        metrics.OPEN_GATEWAY_POSTS.labels(gateway=gateway_id).inc()
    token_param = gateway.config.inbound.token_param
    if gateway.secrets.inbound_token is not None:
        webhook = replace(webhook, query=tuple(p for p in webhook.query if p[0] != token_param))
    return gateway, webhook


async def _publish_all(
    request: web.Request, messages: list[tuple[Envelope, str, str]]
) -> web.Response | None:
    """Publish every (message, exchange, routing key); a 503 answer if the broker did not."""
    publisher = request.app[PUBLISHER]
    for message, exchange, routing_key in messages:
        try:
            await publisher.publish(
                message,
                exchange=exchange,
                routing_key=routing_key,
                mandatory=exchange != EVENTS_EXCHANGE,
            )
        except PublishFailed as error:
            log.error("gateway_post_not_accepted", error=str(error))
            return _broker_unavailable(request)
    return None


def _broker_unavailable(request: web.Request) -> web.Response:
    return _retry_later(request, "broker_unavailable", "the post could not be queued; retry later")


def _respond(answer: WebhookAnswer) -> web.Response:
    return web.Response(status=answer.status, text=answer.body, content_type=answer.content_type)


def _parsed(parse: Callable[[], T]) -> T:
    try:
        return parse()
    except InvalidWebhook as error:
        raise InvalidRequest(error.status, error.code, str(error), error.field) from error


def _retry_later(request: web.Request, code: str, message: str) -> web.Response:
    retry_after = request.app[ENDPOINTS].settings.retry_after_seconds
    return error_response(503, code, message, headers={"Retry-After": str(retry_after)})


def _accepted(messages: list[InboundSMS]) -> None:
    for message in messages:
        metrics.INBOUND_RECEIVED.labels(gateway=message.gateway_id).inc()
        with bound_message_ids(message):
            log.info("inbound_accepted", gateway_id=message.gateway_id, sender=message.sender)


async def _inbound_part(
    request: web.Request, gateway: Gateway, message: InboundSMS, part: MessagePart
) -> web.Response:
    """One part of a long SMS: stored, and the whole SMS published by the post completing it."""
    long_messages = request.app[LONG_MESSAGES]
    try:
        claim = await long_messages.add(message, part)
    except ConnectionFailure as error:
        log.error("inbound_part_not_stored", gateway_id=message.gateway_id, error=str(error))
        return _retry_later(
            request, "database_unavailable", "the part could not be stored; retry later"
        )
    except StillAssembling as error:
        log.warning("long_message_still_assembling", gateway_id=message.gateway_id)
        return _retry_later(request, "in_progress", f"{error}; retry later")
    if claim is None:
        log.info("inbound_part_stored", gateway_id=message.gateway_id, part=part.number)
        return _respond(gateway.dialect.answer("inbound"))
    whole = claim.message
    refused = await _publish_all(
        request, [(whole, INBOUND_EXCHANGE, inbound_key(whole.gateway_id))]
    )
    try:
        if refused is None:
            await long_messages.published(claim)
        else:
            await long_messages.release(claim)
    except ConnectionFailure as error:  # a pending claim is taken over once stale
        log.warning("long_message_claim_not_updated", error=str(error))
    if refused is not None:
        return refused
    _accepted([whole])
    return _respond(gateway.dialect.answer("inbound"))


async def accept_inbound(
    request: web.Request,
    gateway_id: str,
    answer: Callable[[Gateway, list[InboundSMS]], web.Response],
) -> web.Response:
    """An MO post from gateway `gateway_id`: authenticated, parsed, published; then `answer`."""
    gateway, webhook = await accept(request, gateway_id)
    region = request.app[ENDPOINTS].settings.default_region
    messages: list[InboundSMS] = _parsed(
        lambda: gateway.dialect.parse_inbound(gateway.config, webhook, region)
    )
    read_part = part_reader(gateway.dialect)
    part = _parsed(lambda: read_part(gateway.config, webhook)) if read_part else None
    single_part = part if len(messages) == 1 else None
    if single_part is None and not request.app[PUBLISHER].ready:
        # Refused before the inbound limits count it: a gateway retrying through a broker
        # outage must not use up its senders' limits. (A part is stored without the broker.)
        log.warning("gateway_post_not_accepted", error="the broker is unreachable")
        return _broker_unavailable(request)
    request.app[INBOUND_LIMITS].admit(messages)
    if single_part is not None:
        return await _inbound_part(request, gateway, messages[0], single_part)
    refused = await _publish_all(
        request,
        [(message, INBOUND_EXCHANGE, inbound_key(message.gateway_id)) for message in messages],
    )
    if refused is not None:
        return refused
    _accepted(messages)
    return answer(gateway, messages)


def _dialect_answer(gateway: Gateway, messages: list[InboundSMS]) -> web.Response:
    return _respond(gateway.dialect.answer("inbound"))


async def gateway_inbound(request: web.Request) -> web.Response:
    return await accept_inbound(request, request.match_info["gateway_id"], _dialect_answer)


def _delivery_reports(gateway: Gateway, webhook: WebhookRequest) -> list[DeliveryEvent]:
    """The post's reports; a forged reference is logged (never the body) before the 403."""
    try:
        return gateway.dialect.parse_status(gateway.config, webhook, gateway.secrets)
    except ForgedReference as error:
        log.warning(
            "delivery_report_refused",
            gateway_id=gateway.config.id,
            reason=str(error),
            remote=webhook.remote,
        )
        raise


async def gateway_status(request: web.Request) -> web.Response:
    gateway, webhook = await accept(request, request.match_info["gateway_id"])
    events = _parsed(lambda: _delivery_reports(gateway, webhook))
    try:  # one report per message: they share the log's next batch
        await asyncio.gather(*(request.app[MESSAGE_LOG].add(event) for event in events))
    except ConnectionFailure as error:
        log.error("delivery_report_not_logged", error=str(error))
        return _retry_later(
            request, "database_unavailable", "the report could not be logged; retry later"
        )
    refused = await _publish_all(
        request,
        [(event, EVENTS_EXCHANGE, event_key(event.status, event.adapter)) for event in events],
    )
    if refused is not None:
        return refused
    for event in events:
        metrics.DELIVERY_REPORTS.labels(gateway=event.gateway_id, status=event.status).inc()
        log.info(
            "delivery_report",
            gateway_id=event.gateway_id,
            outbound_id=event.outbound_id,
            status=event.status,
        )
    return _respond(gateway.dialect.answer("status"))


def add_gateway_routes(
    app: web.Application, gateways: GatewaysConfig, settings: IngressSettings
) -> None:
    """Register the routes; fails at start on a missing secret or an impossible check."""
    secrets = gateways.secrets(
        os.environ, reference_secret=settings.reference_secret.get_secret_value()
    )
    configured: dict[str, Gateway] = {}
    for config in gateways.gateways:
        dialect = DIALECTS[config.type]
        check_configuration(config, dialect)
        if config.inbound.open:
            log.warning(
                "gateway_open",
                gateway_id=config.id,
                note="anyone who reaches ingress may post as this gateway (inbound: open: true)",
            )
        configured[config.id] = Gateway(config, dialect, secrets[config.id])
    proxies = tuple(ip_network(network) for network in settings.trusted_proxies)
    app[ENDPOINTS] = GatewayEndpoints(configured, settings, proxies)
    for method in ("GET", "POST"):
        app.router.add_route(method, "/gateways/{gateway_id}/inbound", gateway_inbound)
        app.router.add_route(method, "/gateways/{gateway_id}/status", gateway_status)
