"""A demo bank back-end, served beside the gateway simulator under `/backend`, for the bank
adapter (services/adapters/bank) to call over HTTP.

- `GET /backend/accounts/{phone}/balance` -> `{"phone", "balance", "currency"}`; every number has
  an account, opened with 100.00 the first time it is seen.
- `POST /backend/transfers` (JSON `from`, `to_account`, `amount`) -> 201 with `transfer_id` and
  the new `balance`; 422 for a bad amount or insufficient funds. With an `Idempotency-Key`
  header, a repeated request gets the first answer and moves no money again.
- `POST /backend/faults` `{"count": 2, "status": 503}` fails the next calls; `{"delay": 30}` makes
  them hang instead (to test timeouts). `GET /backend/requests` lists the calls received (method,
  path, the tracing headers); `DELETE /backend/requests` forgets them and the faults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web
from pydantic import Field
from ulid import ULID

from twoway_gateway_sim.faults import Faults, read_faults

OPENING_BALANCE = Decimal("100.00")
CURRENCY = "USD"
RECORDED_HEADERS = ("X-Twoway-Message-Id", "X-Correlation-Id", "traceparent", "Idempotency-Key")


class BackendFaults(Faults):
    """A back-end's faults answer 503 unless told otherwise."""

    status: int = Field(default=503, ge=100, le=599)


@dataclass
class BackendState:
    balances: dict[str, Decimal] = field(default_factory=dict)
    transfers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: BackendFaults = field(default_factory=lambda: BackendFaults(count=0))

    def balance(self, phone: str) -> Decimal:
        return self.balances.setdefault(phone, OPENING_BALANCE)


BACKEND = web.AppKey("backend", BackendState)


@web.middleware
async def _record_and_fault(request: web.Request, handler: Any) -> web.StreamResponse:
    """Records calls to `/backend/...` routes other than the control ones, and injects faults."""
    if not request.path.startswith("/backend/") or request.path.startswith(
        ("/backend/faults", "/backend/requests")
    ):
        response: web.StreamResponse = await handler(request)
        return response
    state = request.app[BACKEND]
    state.requests.append(
        {
            "method": request.method,
            "path": request.path,
            "headers": {
                name: request.headers[name] for name in RECORDED_HEADERS if name in request.headers
            },
        }
    )
    injected = await state.faults.inject()
    if injected is not None:
        return injected
    response = await handler(request)
    return response


async def get_balance(request: web.Request) -> web.Response:
    phone = request.match_info["phone"]
    balance = request.app[BACKEND].balance(phone)
    return web.json_response({"phone": phone, "balance": f"{balance:.2f}", "currency": CURRENCY})


def _transfer(state: BackendState, body: Any) -> tuple[int, dict[str, Any]]:
    try:
        source = str(body["from"])
        to_account = str(body["to_account"])
        amount = Decimal(str(body["amount"]))
    except (KeyError, TypeError, InvalidOperation):
        return 422, {"error": "from, to_account and a decimal amount are required"}
    if not amount.is_finite() or amount <= 0:
        return 422, {"error": "the amount must be positive"}
    balance = state.balance(source)
    if amount > balance:
        return 422, {"error": "insufficient funds", "balance": f"{balance:.2f}"}
    state.balances[source] = balance - amount
    return 201, {
        "transfer_id": str(ULID()),
        "to_account": to_account,
        "amount": f"{amount:.2f}",
        "balance": f"{state.balances[source]:.2f}",
    }


async def post_transfer(request: web.Request) -> web.Response:
    state = request.app[BACKEND]
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "post a JSON object"}, status=400)
    key = request.headers.get("Idempotency-Key")
    if key is not None and key in state.transfers:
        status, answer = state.transfers[key]
    else:
        status, answer = _transfer(state, body)
        if key is not None:
            state.transfers[key] = (status, answer)
    return web.json_response(answer, status=status)


async def set_faults(request: web.Request) -> web.Response:
    request.app[BACKEND].faults = await read_faults(request, BackendFaults)
    return web.json_response({"status": "set"})


async def list_requests(request: web.Request) -> web.Response:
    return web.json_response(request.app[BACKEND].requests)


async def clear_requests(request: web.Request) -> web.Response:
    state = request.app[BACKEND]
    state.requests.clear()
    state.faults = BackendFaults(count=0)
    return web.json_response({"status": "cleared"})


def add_backend_routes(app: web.Application) -> None:
    """Serve the demo back-end from `app`, under `/backend`."""
    app[BACKEND] = BackendState()
    app.middlewares.append(_record_and_fault)
    app.router.add_get("/backend/accounts/{phone}/balance", get_balance)
    app.router.add_post("/backend/transfers", post_transfer)
    app.router.add_post("/backend/faults", set_faults)
    app.router.add_get("/backend/requests", list_requests)
    app.router.add_delete("/backend/requests", clear_requests)
