"""The ingress application: gateways post SMS here; we answer only once the broker has them."""

from __future__ import annotations

from aiohttp import web

from twoway.gateways.config import GatewaysConfig, load_gateways
from twoway.messages import InboundSMS
from twoway.service import amqp_context, create_base_app, mongo_context
from twoway_ingress.errors import InvalidRequest, json_errors
from twoway_ingress.gateways import (
    Gateway,
    accept_inbound,
    add_gateway_routes,
    message_log_context,
)
from twoway_ingress.inbound_limits import inbound_limits_context
from twoway_ingress.long_messages import long_messages_context
from twoway_ingress.openapi import serve_openapi
from twoway_ingress.settings import IngressSettings
from twoway_ingress.subscribe import add_subscribe_route

SETTINGS = web.AppKey("ingress_settings", IngressSettings)
GATEWAYS = web.AppKey("gateways", GatewaysConfig)


def _accepted_answer(gateway: Gateway, messages: list[InboundSMS]) -> web.Response:
    [message] = messages
    return web.json_response({"status": "accepted", "message_id": message.message_id}, status=202)


async def receive_sms(request: web.Request) -> web.Response:
    """`GET|POST /receiveSMS` (MobileFirst): `from`, `text`, optional `to` and `keyword`.

    The MO of gateway `TWOWAY_RECEIVE_GATEWAY` (a `mobilefirst-http` gateway, whose checks and
    parameter names apply), answered 202 with the message id once the broker has it.
    """
    gateway_id = request.app[SETTINGS].receive_gateway
    if gateway_id is None:
        raise InvalidRequest(
            404,
            "not_enabled",
            "/receiveSMS belongs to no gateway: set TWOWAY_RECEIVE_GATEWAY to a mobilefirst-http "
            "gateway (or post to /gateways/<id>/inbound)",
        )
    return await accept_inbound(request, gateway_id, _accepted_answer)


def _check_receive_gateway(settings: IngressSettings, gateways: GatewaysConfig) -> None:
    if settings.receive_gateway is None:
        return
    gateway = gateways.get(settings.receive_gateway)
    if gateway is None or gateway.type != "mobilefirst-http":
        raise ValueError(
            f"TWOWAY_RECEIVE_GATEWAY={settings.receive_gateway!r} must name a mobilefirst-http "
            "gateway of the gateways file"
        )


def create_app(settings: IngressSettings) -> web.Application:
    app = create_base_app(middlewares=[json_errors], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[GATEWAYS] = load_gateways(settings.gateways_file)
    _check_receive_gateway(settings, app[GATEWAYS])
    app.cleanup_ctx.append(amqp_context(settings, "ingress"))
    # Readiness is the broker's alone: /receiveSMS and the gateway endpoints (the MO path) need
    # only the broker, so ingress keeps accepting MO while MongoDB is down rather than leaving
    # the gateways with no endpoint. /subscribeSMS, and the parts of long SMS that a gateway
    # posts one by one (stored until the last arrives), answer 503 meanwhile.
    app.cleanup_ctx.append(mongo_context(settings, "ingress", ready_check=False))
    app.cleanup_ctx.append(long_messages_context(settings))
    app.cleanup_ctx.append(message_log_context)
    app.cleanup_ctx.append(inbound_limits_context(settings, app[GATEWAYS]))
    app.router.add_route("GET", "/receiveSMS", receive_sms)
    app.router.add_route("POST", "/receiveSMS", receive_sms)
    add_gateway_routes(app, app[GATEWAYS], settings)
    add_subscribe_route(app, settings)
    app.router.add_get("/openapi.json", serve_openapi)
    return app
