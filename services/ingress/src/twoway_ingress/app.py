"""The ingress application: gateways post SMS here; we answer only once the broker has them."""

from __future__ import annotations

import structlog
from aiohttp import web

from twoway import metrics
from twoway.broker import PublishFailed
from twoway.gateways.config import GatewaysConfig, load_gateways
from twoway.logs import bound_message_ids
from twoway.messages import InboundSMS
from twoway.service import PUBLISHER, amqp_context, create_base_app, mongo_context
from twoway.topology import INBOUND_EXCHANGE, inbound_key
from twoway_ingress.errors import error_response, json_errors
from twoway_ingress.gateways import add_gateway_routes, message_log_context
from twoway_ingress.inbound_limits import INBOUND_LIMITS, inbound_limits_context
from twoway_ingress.long_messages import long_messages_context
from twoway_ingress.receive import inbound_from_fields, request_fields
from twoway_ingress.settings import IngressSettings
from twoway_ingress.subscribe import subscribe_sms, subscriptions_context

log = structlog.get_logger(__name__)

SETTINGS = web.AppKey("ingress_settings", IngressSettings)
GATEWAYS = web.AppKey("gateways", GatewaysConfig)


async def publish_inbound(request: web.Request, message: InboundSMS) -> web.Response:
    """Publish `message` and answer 202 once confirmed, or 503 (the gateway retries)."""
    settings = request.app[SETTINGS]
    with bound_message_ids(message):
        try:
            await request.app[PUBLISHER].publish(
                message, exchange=INBOUND_EXCHANGE, routing_key=inbound_key(message.gateway_id)
            )
        except PublishFailed as error:
            log.error("inbound_not_accepted", error=str(error))
            return error_response(
                503,
                "broker_unavailable",
                "the message could not be queued; retry later",
                headers={"Retry-After": str(settings.retry_after_seconds)},
            )
        metrics.INBOUND_RECEIVED.labels(gateway=message.gateway_id).inc()
        log.info("inbound_accepted", gateway_id=message.gateway_id, sender=message.sender)
    return web.json_response({"status": "accepted", "message_id": message.message_id}, status=202)


async def receive_sms(request: web.Request) -> web.Response:
    """`GET|POST /receiveSMS` (MobileFirst): `from`, `text`, optional `to` and `keyword`.

    MobileFirst had one gateway; posts here come from the default gateway of the gateways file,
    which is also where replies go.
    """
    settings = request.app[SETTINGS]
    fields = await request_fields(request)
    gateway_id = request.app[GATEWAYS].default_gateway
    message = inbound_from_fields(fields, gateway_id, settings.default_region)
    request.app[INBOUND_LIMITS].admit([message])
    return await publish_inbound(request, message)


def create_app(settings: IngressSettings) -> web.Application:
    app = create_base_app(middlewares=[json_errors], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[GATEWAYS] = load_gateways(settings.gateways_file)
    app.cleanup_ctx.append(amqp_context(settings, "ingress"))
    # Readiness is the broker's alone: /receiveSMS and the gateway endpoints (the MO path) need
    # only the broker, so ingress keeps accepting MO while MongoDB is down rather than leaving
    # the gateways with no endpoint. /subscribeSMS, and the parts of long SMS that a gateway
    # posts one by one (stored until the last arrives), answer 503 meanwhile.
    app.cleanup_ctx.append(mongo_context(settings, "ingress", ready_check=False))
    app.cleanup_ctx.append(subscriptions_context(settings))
    app.cleanup_ctx.append(long_messages_context(settings))
    app.cleanup_ctx.append(message_log_context)
    app.cleanup_ctx.append(inbound_limits_context(settings, app[GATEWAYS]))
    app.router.add_route("GET", "/subscribeSMS", subscribe_sms)
    app.router.add_route("GET", "/receiveSMS", receive_sms)
    app.router.add_route("POST", "/receiveSMS", receive_sms)
    add_gateway_routes(app, app[GATEWAYS], settings)
    return app
