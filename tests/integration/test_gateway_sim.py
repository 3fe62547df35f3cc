"""The gateway simulator as a phone (`POST /mo`, `twoway-gateway-sim send`) and its fault
injection (`POST /faults`), over loopback HTTP against a stand-in ingress that records posts."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.servers import serving
from twoway_gateway_sim.settings import GatewaySimSettings
from twoway_gateway_sim.simulator import create_app

MO = {"from": "+15551234567", "to": "12345", "text": "ECHO hi"}
NOBODY = "http://127.0.0.1:1"
"""An ingress URL nothing listens on."""


@dataclass
class FakeIngress:
    """Records every `/receiveSMS` form and accepts it, as ingress does."""

    posts: list[dict[str, str]] = field(default_factory=list)

    async def receive(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.posts.append({key: str(value) for key, value in form.items()})
        return web.json_response({"status": "accepted"}, status=202)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/receiveSMS", self.receive)
        return app


@dataclass(frozen=True)
class Sim:
    url: str
    http: aiohttp.ClientSession
    ingress: FakeIngress

    async def call(self, method: str, path: str, **options: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, **options) as response:
            assert response.content_type == "application/json"
            return response.status, await response.json()


@pytest.fixture
async def ingress() -> AsyncIterator[tuple[FakeIngress, str]]:
    fake = FakeIngress()
    async with serving(fake.app()) as url:
        yield fake, url


@pytest.fixture
async def sim(ingress: tuple[FakeIngress, str]) -> AsyncIterator[Sim]:
    fake, url = ingress
    async with (
        serving(create_app(GatewaySimSettings(port=0, ingress_url=url))) as sim_url,
        aiohttp.ClientSession() as http,
    ):
        yield Sim(sim_url, http, fake)


async def test_mo_is_posted_to_ingress_as_a_gateway_form(sim: Sim) -> None:
    assert await sim.call("POST", "/mo", json=MO) == (
        200,
        {"ingress_status": 202, "ingress_body": '{"status": "accepted"}'},
    )
    assert sim.ingress.posts == [MO]


BAD_MO = [
    pytest.param(b"from=+1", 400, "invalid_json", None, id="not-json"),
    pytest.param(b'[{"from": "+15551234567"}]', 400, "invalid_json", None, id="array"),
    pytest.param(b'"ECHO hi"', 400, "invalid_json", None, id="string"),
    pytest.param(
        b'{"from": "+15551234567", "text": 42}', 422, "invalid_field", "text", id="number"
    ),
]


@pytest.mark.parametrize(("body", "status", "code", "field"), BAD_MO)
async def test_an_mo_that_is_not_an_object_of_strings_is_a_json_error(
    sim: Sim, body: bytes, status: int, code: str, field: str | None
) -> None:
    answer, error = await sim.call("POST", "/mo", data=body)
    assert (answer, error["error"], error.get("field")) == (status, code, field)
    assert error["message"]
    assert sim.ingress.posts == []


async def test_mo_with_ingress_down_is_502_json() -> None:
    async with (
        serving(create_app(GatewaySimSettings(port=0, ingress_url=NOBODY))) as url,
        aiohttp.ClientSession() as http,
        http.post(f"{url}/mo", json=MO) as response,
    ):
        assert response.status == 502
        error = await response.json()
    assert error["error"] == "ingress_unreachable"
    assert error["message"].startswith(f"ingress at {NOBODY} did not answer: ")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"status=500", id="not-json"),
        pytest.param(b"[500]", id="array"),
        pytest.param(b'{"status": 99}', id="status-too-low"),
        pytest.param(b'{"status": 600}', id="status-too-high"),
        pytest.param(b'{"status": "often"}', id="status-not-a-number"),
        pytest.param(b'{"count": -1}', id="negative-count"),
        pytest.param(b'{"delay": -1}', id="negative-delay"),
        pytest.param(b'{"colour": "red"}', id="unknown-field"),
    ],
)
async def test_bad_faults_are_a_json_error_and_change_nothing(sim: Sim, body: bytes) -> None:
    status, error = await sim.call("POST", "/faults", data=body)
    assert (status, error["error"]) == (400, "invalid_faults")
    assert error["message"].startswith("bad faults: ")
    assert (await sim.call("GET", "/sendSMS", params={"to": "+1", "text": "x"}))[0] == 200


async def test_faults_fail_the_next_sends_then_sends_succeed(sim: Sim) -> None:
    assert await sim.call("POST", "/faults", json={"status": 503, "count": 2}) == (
        200,
        {"status": "set"},
    )
    sends = [await sim.call("GET", "/sendSMS", params={"to": "+1", "text": "x"}) for _ in range(3)]
    assert [status for status, _ in sends] == [503, 503, 200]


async def test_messages_after_an_offset_are_those_received_after_the_first_n(sim: Sim) -> None:
    for number in range(3):
        await sim.call("GET", "/sendSMS", params={"to": "+1", "text": f"{number}"})
    status, listed = await sim.call("GET", "/messages", params={"offset": "2"})
    assert (status, [record["text"] for record in listed]) == (200, ["2"])
    assert (await sim.call("GET", "/messages", params={"offset": "3"}))[1] == []
    status, error = await sim.call("GET", "/messages", params={"offset": "-1"})
    assert (status, error["error"], error["field"]) == (400, "invalid_offset", "offset")


async def send_command(ingress_url: str) -> tuple[int, str, str]:
    """Run `twoway-gateway-sim send` against `ingress_url`: exit status, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "twoway_gateway_sim",
        "send",
        MO["from"],
        MO["to"],
        MO["text"],
        env={**os.environ, "TWOWAY_INGRESS_URL": ingress_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_send_command_posts_one_mo(ingress: tuple[FakeIngress, str]) -> None:
    fake, url = ingress
    assert await send_command(url) == (0, '202 {"status": "accepted"}\n', "")
    assert fake.posts == [MO]


async def test_the_send_command_fails_cleanly_when_ingress_is_down() -> None:
    status, out, err = await send_command(NOBODY)
    assert (status, out) == (1, "")
    assert err.startswith(f"ingress at {NOBODY} did not answer: ")
    assert "Traceback" not in err
