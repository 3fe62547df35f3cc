"""The gateway simulator, a development tool like Kannel's fakesmsc.

As a gateway's send API it takes MT at `GET|POST /sendSMS` (the MobileFirst HTTP shape: `to`,
`from`, `text` and any other parameter) and records it: `GET /messages` lists what it received
(`?offset=N`: after the first N, so a poller reads only what is new), `DELETE /messages` forgets
it; an MT carrying a `dlr_url` parameter (a gateway's `status_param`)
is reported delivered to that URL. `POST /faults` makes the next sends fail (`{"status": 500,
"count": 2}`, or `{"delay": 30}` to time out). As a phone, `POST /mo` (a JSON object of string
parameters: `from`, `to`, `text`, ...) posts an MO message to ingress's `/receiveSMS` and answers
with ingress's status and body, or 502 when ingress cannot be reached. Errors are JSON
(`twoway.http_errors`). Under `/backend` it also plays the demo bank back-end the bank adapter
calls (`backend.py`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from twoway.http_errors import InvalidRequest, error_response, json_errors
from twoway.messages import utc_now
from twoway.service import create_base_app
from twoway_gateway_sim.backend import add_backend_routes
from twoway_gateway_sim.faults import Faults, read_faults
from twoway_gateway_sim.settings import GatewaySimSettings

log = structlog.get_logger(__name__)


@dataclass
class GatewayState:
    received: deque[dict[str, Any]]
    recorded: int = 0
    """MT recorded since the last clear, also those the bounded `received` has dropped."""
    faults: Faults = field(default_factory=lambda: Faults(count=0))
    attempts: int = 0
    reports: set[asyncio.Task[None]] = field(default_factory=set)


STATE = web.AppKey("state", GatewayState)
SETTINGS = web.AppKey("settings", GatewaySimSettings)
HTTP = web.AppKey("http", aiohttp.ClientSession)


async def send_sms(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.attempts += 1
    fields: dict[str, str] = dict(request.query)
    if request.method == "POST":
        form = await request.post()
        fields.update({key: value for key, value in form.items() if isinstance(value, str)})
    injected = await state.faults.inject()
    if injected is not None:
        return injected
    if "to" not in fields or "text" not in fields:
        return web.json_response({"error": "to and text are required"}, status=400)
    record = {
        "to": fields["to"],
        "from": fields.get("from"),
        "text": fields["text"],
        "params": {k: v for k, v in fields.items() if k not in {"to", "from", "text"}},
        "received_at": utc_now().isoformat(),
    }
    state.received.append(record)
    state.recorded += 1
    dlr_url = fields.get(request.app[SETTINGS].dlr_param)
    if dlr_url:
        report = asyncio.create_task(_report_delivery(request.app, dlr_url, len(state.received)))
        state.reports.add(report)
        report.add_done_callback(state.reports.discard)
    return web.json_response({"status": "accepted", "id": str(len(state.received))})


async def _report_delivery(app: web.Application, url: str, number: int) -> None:
    """Like a gateway: report the MT delivered to the URL it carried (a status_param)."""
    try:
        async with app[HTTP].post(url, data={"status": "delivered", "id": str(number)}):
            pass
    except aiohttp.ClientError as error:
        log.warning("delivery_report_failed", error=str(error))


async def list_messages(request: web.Request) -> web.Response:
    state = request.app[STATE]
    offset = request.query.get("offset", "0")
    if not offset.isdecimal():
        raise InvalidRequest(400, "invalid_offset", "offset: a whole number", field="offset")
    dropped = state.recorded - len(state.received)
    skipped = max(int(offset) - dropped, 0)
    return web.json_response(list(itertools.islice(state.received, skipped, None)))


async def count_messages(request: web.Request) -> web.Response:
    return web.json_response({"count": len(request.app[STATE].received)})


async def clear_messages(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.received.clear()
    state.recorded = 0
    state.attempts = 0
    return web.json_response({"status": "cleared"})


async def set_faults(request: web.Request) -> web.Response:
    request.app[STATE].faults = await read_faults(request, Faults)
    return web.json_response({"status": "set"})


async def post_to_ingress(
    http: aiohttp.ClientSession, ingress_url: str, fields: Mapping[str, str]
) -> tuple[int, str]:
    """Post an MO form to ingress's /receiveSMS as a phone's gateway does: its status and body.
    Raises `aiohttp.ClientError` when ingress cannot be reached."""
    async with http.post(ingress_url.rstrip("/") + "/receiveSMS", data=fields) as response:
        return response.status, await response.text()


def _mo_fields(body: bytes) -> dict[str, str]:
    try:
        fields = json.loads(body)
    except ValueError as error:
        raise InvalidRequest(400, "invalid_json", f"the body is not valid JSON: {error}") from error
    if not isinstance(fields, dict):
        raise InvalidRequest(400, "invalid_json", "post a JSON object: from, to, text")
    for key, value in fields.items():
        if not isinstance(value, str):
            raise InvalidRequest(422, "invalid_field", f"{key} must be a string", key)
    return fields


async def post_mo(request: web.Request) -> web.Response:
    """Act as a phone: post the given MO (`from`, `to`, `text`) to ingress's /receiveSMS."""
    fields = _mo_fields(await request.read())
    ingress_url = request.app[SETTINGS].ingress_url
    try:
        status, body = await post_to_ingress(request.app[HTTP], ingress_url, fields)
    except aiohttp.ClientError as error:
        log.warning("ingress_unreachable", error=str(error))
        return error_response(
            502, "ingress_unreachable", f"ingress at {ingress_url} did not answer: {error}"
        )
    return web.json_response({"ingress_status": status, "ingress_body": body})


async def _http(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:
        app[HTTP] = session
        yield


def create_app(settings: GatewaySimSettings) -> web.Application:
    app = create_base_app(middlewares=[json_errors()])
    app[SETTINGS] = settings
    app[STATE] = GatewayState(deque(maxlen=settings.max_recorded))
    app.cleanup_ctx.append(_http)
    app.router.add_route("GET", "/sendSMS", send_sms)
    app.router.add_route("POST", "/sendSMS", send_sms)
    app.router.add_get("/messages", list_messages)
    app.router.add_get("/messages/count", count_messages)
    app.router.add_delete("/messages", clear_messages)
    app.router.add_post("/faults", set_faults)
    app.router.add_post("/mo", post_mo)
    add_backend_routes(app)
    return app
