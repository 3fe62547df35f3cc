"""The demo bank back-end of the gateway simulator, over loopback HTTP (no broker needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.servers import serving
from twoway_gateway_sim.settings import GatewaySimSettings
from twoway_gateway_sim.simulator import create_app

PHONE = "+15551234567"


@pytest.fixture
async def backend() -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with (
        serving(create_app(GatewaySimSettings(port=0))) as url,
        aiohttp.ClientSession() as http,
    ):
        yield f"{url}/backend", http


async def call(
    backend: tuple[str, aiohttp.ClientSession], method: str, path: str, **options: Any
) -> tuple[int, Any]:
    url, http = backend
    async with http.request(method, url + path, **options) as response:
        return response.status, await response.json()


async def test_every_number_has_an_account_with_an_opening_balance(
    backend: tuple[str, aiohttp.ClientSession],
) -> None:
    assert await call(backend, "GET", f"/accounts/{PHONE}/balance") == (
        200,
        {"phone": PHONE, "balance": "100.00", "currency": "USD"},
    )


async def test_a_transfer_debits_once_per_idempotency_key(
    backend: tuple[str, aiohttp.ClientSession],
) -> None:
    transfer = {"from": PHONE, "to_account": "12345678", "amount": "30"}
    headers = {"Idempotency-Key": "sms-1"}
    first = await call(backend, "POST", "/transfers", json=transfer, headers=headers)
    again = await call(backend, "POST", "/transfers", json=transfer, headers=headers)
    assert first == again
    assert first[0] == 201
    assert first[1]["balance"] == "70.00"
    assert await call(backend, "GET", f"/accounts/{PHONE}/balance") == (
        200,
        {"phone": PHONE, "balance": "70.00", "currency": "USD"},
    )


REFUSED = [
    pytest.param({"from": PHONE, "to_account": "1", "amount": "500"}, 422, id="insufficient-funds"),
    pytest.param({"from": PHONE, "to_account": "1", "amount": "-1"}, 422, id="negative"),
    pytest.param({"from": PHONE, "to_account": "1", "amount": "lots"}, 422, id="not-a-number"),
    pytest.param({"from": PHONE, "amount": "1"}, 422, id="no-account"),
]


@pytest.mark.parametrize(("transfer", "status"), REFUSED)
async def test_bad_transfers_are_refused(
    backend: tuple[str, aiohttp.ClientSession], transfer: dict[str, str], status: int
) -> None:
    answer, body = await call(backend, "POST", "/transfers", json=transfer)
    assert (answer, bool(body["error"])) == (status, True)


async def test_a_transfer_that_is_not_json_is_refused(
    backend: tuple[str, aiohttp.ClientSession],
) -> None:
    assert (await call(backend, "POST", "/transfers", data="amount=1"))[0] == 400


async def test_faults_fail_the_next_calls_and_requests_are_recorded(
    backend: tuple[str, aiohttp.ClientSession],
) -> None:
    assert (await call(backend, "POST", "/faults", json={"count": 1, "status": 502}))[0] == 200
    assert (await call(backend, "GET", f"/accounts/{PHONE}/balance"))[0] == 502
    assert (await call(backend, "GET", f"/accounts/{PHONE}/balance"))[0] == 200
    status, requests = await call(backend, "GET", "/requests")
    assert status == 200
    assert [request["path"] for request in requests] == [f"/backend/accounts/{PHONE}/balance"] * 2
    assert (await call(backend, "DELETE", "/requests"))[0] == 200
    assert await call(backend, "GET", "/requests") == (200, [])


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"count": -1}, id="negative-count"),
        pytest.param({"status": 99}, id="bad-status"),
    ],
)
async def test_bad_faults_are_refused(
    backend: tuple[str, aiohttp.ClientSession], faults: dict[str, int]
) -> None:
    assert (await call(backend, "POST", "/faults", json=faults))[0] == 400
