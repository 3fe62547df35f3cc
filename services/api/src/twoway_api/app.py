"""The api application (port 8081): Twoway's control plane over REST.

Every route but `/openapi.json` (and the health routes every service has) needs the bearer token
(`TWOWAY_API_TOKEN`): reads too, since subscriptions are personal data (phone numbers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from twoway.broadcasts import open_subscription_services
from twoway.http_errors import json_errors
from twoway.registry import HandlerRegistry
from twoway.service import (
    MONGO_DB,
    PUBLISHER,
    CleanupContext,
    amqp_context,
    create_base_app,
    mongo_context,
)
from twoway_api.delivery import DELIVERY_OPERATIONS, DELIVERY_PATH_PARAMETERS, delivery_context
from twoway_api.messages import MESSAGE_OPERATIONS, messages_context
from twoway_api.operations import Operation, Response, add_operations, openapi_document
from twoway_api.resources import (
    BROADCASTS,
    HANDLER_REGISTRY,
    OPERATIONS,
    PATH_PARAMETERS,
    SUBSCRIPTIONS,
    domain_errors,
)
from twoway_api.settings import ApiSettings

OPENAPI = web.AppKey("openapi", dict[str, Any])


async def serve_openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


ALL_OPERATIONS = [
    *OPERATIONS,
    *MESSAGE_OPERATIONS,
    *DELIVERY_OPERATIONS,
    Operation(
        "GET",
        "/openapi.json",
        serve_openapi,
        operation_id="getOpenApi",
        summary="This OpenAPI document",
        tag="meta",
        responses={200: Response("The OpenAPI 3.1 document of the api")},
        public=True,
    ),
]


def _stores(settings: ApiSettings) -> CleanupContext:
    async def context(app: web.Application) -> AsyncIterator[None]:
        app[SUBSCRIPTIONS], app[BROADCASTS] = await open_subscription_services(
            app[MONGO_DB], app[PUBLISHER], settings.default_region
        )
        app[HANDLER_REGISTRY] = HandlerRegistry(app[MONGO_DB])
        yield

    return context


def create_app(settings: ApiSettings) -> web.Application:
    app = create_base_app(
        middlewares=[json_errors(), domain_errors], client_max_size=settings.max_body_bytes
    )
    path_parameters = {**PATH_PARAMETERS, **DELIVERY_PATH_PARAMETERS}
    app[OPENAPI] = openapi_document(
        ALL_OPERATIONS,
        title="Twoway api",
        version="1",
        description="Subscriptions of phone numbers to event sources, notifications to every "
        "subscriber (broadcasts), the handler registry, sent messages' status and outbound's "
        "dead letters. Authenticate with "
        "`Authorization: Bearer <token>`.",
        path_parameters=path_parameters,
    )
    app.cleanup_ctx.append(amqp_context(settings, "api"))
    app.cleanup_ctx.append(mongo_context(settings, "api"))
    app.cleanup_ctx.append(_stores(settings))
    app.cleanup_ctx.append(delivery_context(settings))
    app.cleanup_ctx.append(messages_context(settings))  # uses the message log
    add_operations(app, ALL_OPERATIONS, settings.api_token.get_secret_value(), path_parameters)
    return app
