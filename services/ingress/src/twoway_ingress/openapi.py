"""Ingress's OpenAPI 3.1 document, served at `/openapi.json`: what a gateway (or a tester) may
post here, and every answer it can get. `tests/unit/test_ingress_document.py` holds it to the
routes the app registers, so the two cannot drift apart."""

from __future__ import annotations

from typing import Any

from aiohttp import web

ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*statuses: int) -> dict[str, Any]:
    meanings = {
        400: "A body that cannot be read (malformed form or JSON, JSON nested too deeply)",
        403: "The post failed the gateway's inbound checks, or a report's reference is forged",
        404: "An unknown gateway, or an endpoint that is not enabled",
        405: "Another method (see Allow)",
        413: "A body over TWOWAY_MAX_BODY_BYTES",
        415: "A body that is neither a form nor JSON",
        422: "A field missing, malformed, too long or not ours (named in `field`)",
        429: "Over an inbound limit (see Retry-After)",
        503: "The broker (or, for reports and parts, the database) is unavailable: retry",
    }
    answers: dict[str, Any] = {
        str(status): {
            "description": meanings[status],
            "content": {"application/json": {"schema": ERROR}},
        }
        for status in statuses
    }
    for status in (429, 503):
        if status in statuses:
            answers[str(status)]["headers"] = {
                "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds"}
            }
    return answers


def _query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", **schema},
    }


MO_PARAMETERS = [
    _query("from", "The sender's number (required here or in the body)", maxLength=32),
    _query("to", "The short code, number or sender id texted: one of the gateway's own"),
    _query("text", "The message text (required here or in the body)"),
    _query("keyword", "The keyword; by default the text's first word", maxLength=32),
    _query("token", "The gateway's inbound token, when it has one (or X-Twoway-Token)"),
]
MO_BODY = {
    "required": False,
    "description": "The same fields as a form or a JSON object; every other field is kept",
    "content": {
        media: {"schema": {"type": "object", "additionalProperties": True}}
        for media in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "application/json",
        )
    },
}
GATEWAY_ID = {
    "name": "gateway_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
}
WEBHOOK_BODY = {
    "required": False,
    "description": "The gateway's own shape (its dialect module in twoway.gateways says which)",
    "content": {"*/*": {"schema": {}}},
}
GATEWAY_ANSWER = {"200": {"description": "The answer the gateway expects (often empty)"}}


def _receive(method: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": f"receiveSMS{method.title()}",
        "summary": "MobileFirst's /receiveSMS: an MO of the gateway TWOWAY_RECEIVE_GATEWAY",
        "parameters": MO_PARAMETERS,
        "responses": {
            "202": {
                "description": "Queued (confirmed by the broker)",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}
                },
            },
            **_errors(400, 403, 404, 405, 413, 415, 422, 429, 503),
        },
    }
    if method == "post":
        operation["requestBody"] = MO_BODY
    return operation


def _webhook(method: str, kind: str) -> dict[str, Any]:
    what = "MO" if kind == "inbound" else "delivery reports"
    operation: dict[str, Any] = {
        "operationId": f"gateway{kind.title()}{method.title()}",
        "summary": f"A gateway's {what}, in its dialect",
        "parameters": [GATEWAY_ID],
        "responses": {**GATEWAY_ANSWER, **_errors(400, 403, 404, 405, 413, 415, 422, 429, 503)},
    }
    if kind == "status":
        del operation["responses"]["429"]
    if method == "post":
        operation["requestBody"] = WEBHOOK_BODY
    return operation


SUBSCRIBE = {
    "operationId": "subscribeSMS",
    "summary": "MobileFirst's web subscription (TWOWAY_SUBSCRIBE_MODE: off, gateway or public)",
    "parameters": [
        _query("eventSource", "Adapter.Source"),
        _query("phoneNumber", "The number to subscribe or unsubscribe"),
        _query("userName", "Kept with the subscription"),
        _query("alias", "Kept with the subscription"),
        _query("option", "Any non-blank value: unsubscribe"),
        _query("code", "public mode: the code texted to the number, to confirm"),
    ],
    "responses": {
        "200": {"description": "Done (gateway mode), or confirmed (public mode)"},
        "202": {"description": "public mode: a code was texted to the number"},
        **_errors(403, 404, 405, 422, 429, 503),
    },
}


def _plain(summary: str) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}}


DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Twoway ingress",
        "version": "1",
        "description": "Where gateways post MO and delivery reports. Every refusal is a JSON "
        "error; every post belongs to a configured gateway and passes its checks.",
    },
    "paths": {
        "/receiveSMS": {"get": _receive("get"), "post": _receive("post")},
        "/gateways/{gateway_id}/inbound": {
            "get": _webhook("get", "inbound"),
            "post": _webhook("post", "inbound"),
        },
        "/gateways/{gateway_id}/status": {
            "get": _webhook("get", "status"),
            "post": _webhook("post", "status"),
        },
        "/subscribeSMS": {"get": SUBSCRIBE},
        "/healthz": _plain("Alive"),
        "/readyz": _plain("Ready: the broker is connected (503 otherwise)"),
        "/metrics": _plain("Prometheus metrics"),
        "/openapi.json": _plain("This document"),
    },
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "message"],
                "properties": {
                    "error": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                },
            },
            "Accepted": {
                "type": "object",
                "required": ["status", "message_id"],
                "properties": {
                    "status": {"const": "accepted"},
                    "message_id": {"type": "string"},
                },
            },
        }
    },
}


async def serve_openapi(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)
