"""Property-based fuzzing of everything a stranger can reach: every ingress route and every api
route (enumerated from the api's own OpenAPI document), with requests that hypothesis generates.

Each request is sent to the running services. Whatever it is, the answer is below 500, and a
refusal (4xx) is the JSON error body. After the run every service is still healthy and an
ordinary SMS is still answered, and the inbound exchange holds exactly one message for each MO
that ingress accepted: nothing was published for a refused request.

Hypothesis draws the requests up front (`draw`), then they are sent 32 at a time: the services
answer concurrently as they would a gateway's traffic, which a one-request-at-a-time property
test could not show. A failure names the request that caused it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.broker import listening, queue_length
from tests.support.servers import serving
from tests.support.stack import Phone, Stack, running_stack
from twoway.sdk import AdapterSettings
from twoway.topology import INBOUND_EXCHANGE
from twoway_api.app import create_app as create_api
from twoway_api.settings import ApiSettings
from twoway_echo.adapter import adapter as echo_adapter

pytestmark = [pytest.mark.e2e, pytest.mark.rabbit, pytest.mark.mongo]

TOKEN = "fuzz-token"
INGRESS_REQUESTS = 6000
API_REQUESTS = 4500
CONCURRENCY = 32
MO_ROUTES = ("/receiveSMS", "/gateways/sim/inbound")


@dataclass(frozen=True)
class Fuzzed:
    """One generated request."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    form: dict[str, str] | None = None
    multipart: dict[str, str] | None = None

    def describe(self) -> str:
        return f"{self.method} {self.path} params={self.params} headers={self.headers} " + (
            f"body={self.body[:300]!r} form={self.form} multipart={self.multipart}"
            if self.body is not None
            else f"form={self.form} multipart={self.multipart}"
        )


def draw(strategy: st.SearchStrategy[Fuzzed], count: int) -> list[Fuzzed]:
    """`count` requests drawn by hypothesis, 50 an example (generation only: there is nothing to
    shrink here, a failure prints its request)."""
    drawn: list[Fuzzed] = []

    @settings(
        max_examples=count // 50,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(strategy, min_size=50, max_size=50))
    def collect(requests: list[Fuzzed]) -> None:
        drawn.extend(requests)

    collect()
    return drawn


# Text a URL or a form can carry (no lone surrogates: the client cannot encode them there; JSON
# bodies carry them as escapes below).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
NUMBERS = st.one_of(
    st.from_regex(r"\A\+?[0-9 ()./_-]{0,20}\Z"),
    st.sampled_from(["+15551234567", "447911123456", "0044 7911 123456", "+19005550100", ""]),
)
MO_NAMES = ("from", "to", "text", "keyword", "token", "ref", "status", "id", "detail")
SUBSCRIBE_NAMES = ("eventSource", "phoneNumber", "userName", "alias", "option", "code")
VALUES = st.one_of(TEXT, NUMBERS, st.sampled_from(["ECHO hi", "12345", "12345x", "MyBank"]))


def fields(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.one_of(st.sampled_from(names), TEXT), VALUES, max_size=8)


PLAUSIBLE_MO = st.fixed_dictionaries(
    {"from": NUMBERS, "to": st.sampled_from(["12345", "", "12345x"]), "text": TEXT},
    optional={"keyword": TEXT, "smsc": TEXT},
)
"""An MO that is often accepted, so that what ingress publishes is checked against its answers
(and the per-sender limit answers 429 to the many that share a sender)."""


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)


@st.composite
def json_bodies(draw_: st.DrawFn, names: tuple[str, ...]) -> bytes:
    """A JSON object of the route's fields, or something hostile: lone surrogates, deep nesting,
    not an object, not JSON."""
    kind = draw_(st.sampled_from(["object", "surrogate", "deep", "value", "broken"]))
    if kind == "object":
        document = draw_(st.dictionaries(st.one_of(st.sampled_from(names), TEXT), JSON_VALUES))
        return json.dumps(document).encode()
    if kind == "surrogate":
        name = draw_(st.sampled_from(names))
        return f'{{"from": "+15551234567", "{name}": "ECHO \\ud800"}}'.encode()
    if kind == "deep":
        depth = draw_(st.integers(100, 900))
        return b"[" * depth + b"]" * depth
    if kind == "value":
        return json.dumps(draw_(JSON_VALUES)).encode()
    return draw_(st.binary(max_size=200))


CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=bogus",
        "text/plain",
        "application/xml",
        "multipart/form-data",
        "",
    ]
)


@st.composite
def ingress_requests(draw_: st.DrawFn) -> Fuzzed:
    path = draw_(
        st.sampled_from(
            [
                *MO_ROUTES,
                *MO_ROUTES,
                "/gateways/sim/status",
                "/subscribeSMS",
                "/healthz",
                "/readyz",
                "/metrics",
                "/openapi.json",
                "/gateways/{other}/inbound",
            ]
        )
    )
    if path == "/gateways/{other}/inbound":
        path = f"/gateways/{quote(draw_(TEXT), safe='')}/inbound"
    names = SUBSCRIBE_NAMES if path == "/subscribeSMS" else MO_NAMES
    method = draw_(st.sampled_from(["GET", "GET", "POST", "POST", "POST", "POST", "PUT", "DELETE"]))
    params = draw_(st.one_of(fields(names), PLAUSIBLE_MO))
    if method != "POST":
        return Fuzzed(method, path, params)
    kind = draw_(st.sampled_from(["form", "json", "multipart", "raw"]))
    if kind == "form":
        return Fuzzed(method, path, params, form=draw_(fields(names)))
    if kind == "multipart":
        # Part names travel in a header of the part: the client refuses control characters there.
        names_ = st.one_of(
            st.sampled_from(names),
            st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=20),
        )
        return Fuzzed(
            method, path, params, multipart=draw_(st.dictionaries(names_, VALUES, max_size=8))
        )
    headers = {"Content-Type": draw_(CONTENT_TYPES)}
    body = draw_(json_bodies(names)) if kind == "json" else draw_(st.binary(max_size=300))
    return Fuzzed(method, path, params, headers, body)


HEADER_TEXT = st.text(
    # Latin-1 goes on the wire a byte a character: `\xff` is not UTF-8. Control characters are
    # refused by the client itself (header injection), so they never reach a server.
    st.characters(codec="latin-1", exclude_categories=["Cc"]),
    max_size=30,
)
AUTHORIZATIONS = st.one_of(
    st.just(f"Bearer {TOKEN}"),
    st.just(f"Bearer {TOKEN}"),
    st.just(f"Bearer {TOKEN}"),
    st.sampled_from(["", "Bearer", "Bearer wrong", "Basic Zm9vOmJhcg==", f"bearer {TOKEN}"]),
    HEADER_TEXT,
)


def api_requests(operations: list[tuple[str, str]]) -> st.SearchStrategy[Fuzzed]:
    @st.composite
    def request(draw_: st.DrawFn) -> Fuzzed:
        template, method = draw_(st.sampled_from(operations))
        path = template
        while "{" in path:
            start, end = path.index("{"), path.index("}")
            value = draw_(NUMBERS | TEXT | st.sampled_from(["bank.News", "outbound.send"]))
            path = path[:start] + quote(value, safe="") + path[end + 1 :]
        headers = {"Authorization": draw_(AUTHORIZATIONS)}
        params = draw_(
            st.dictionaries(st.sampled_from(["limit", "after", "cursor", "phone"]), VALUES)
        )
        if method in {"GET", "DELETE"} and draw_(st.booleans()):
            return Fuzzed(method, path, params, headers)
        headers["Content-Type"] = draw_(CONTENT_TYPES)
        if draw_(st.booleans()):
            headers["Idempotency-Key"] = draw_(HEADER_TEXT)
        body = draw_(json_bodies(("text", "to", "from", "gateway_id", "options", "phone")))
        return Fuzzed(method, path, params, headers, body)

    return request()


async def send(http: aiohttp.ClientSession, base: str, request: Fuzzed) -> tuple[int, str, bytes]:
    data: Any = request.body
    headers = dict(request.headers)
    if request.form is not None:
        # Encoded here: aiohttp's own form encoder refuses control characters in names.
        data = urlencode(request.form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif request.multipart is not None:
        data = aiohttp.FormData(quote_fields=False)
        for name, value in request.multipart.items():
            data.add_field(name, value)
    async with http.request(
        request.method,
        base + request.path,
        params=request.params,
        headers=headers,
        data=data,
    ) as response:
        return response.status, response.content_type, await response.read()


@dataclass
class Outcome:
    requests: int = 0
    mo_accepted: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


async def fire(http: aiohttp.ClientSession, base: str, requests: list[Fuzzed]) -> Outcome:
    outcome = Outcome()
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(request: Fuzzed) -> None:
        async with slots:
            status, content_type, body = await send(http, base, request)
        outcome.requests += 1
        outcome.by_status[status] = outcome.by_status.get(status, 0) + 1
        if status < 300 and request.method in {"GET", "POST"} and request.path in MO_ROUTES:
            outcome.mo_accepted += 1
        if status >= 500:
            outcome.failures.append(f"{status} {body[:300]!r} for {request.describe()}")
        elif status >= 400 and not (
            content_type == "application/json" and "error" in json.loads(body)
        ):
            outcome.failures.append(f"{status} not a JSON error for {request.describe()}")

    await asyncio.gather(*(one(request) for request in requests))
    return outcome


@pytest.fixture
async def system(
    make_settings: Callable[..., Any], amqp: AbstractRobustConnection, tmp_path: Path
) -> AsyncIterator[tuple[Stack, str]]:
    def adapters(_gateway: str) -> list[tuple[Any, AdapterSettings]]:
        return [(echo_adapter, make_settings(AdapterSettings))]

    async with (
        running_stack(make_settings, tmp_path, adapters) as stack,
        serving(create_api(make_settings(ApiSettings, api_token=TOKEN))) as api,
    ):
        yield stack, api


async def test_no_generated_request_gets_a_5xx_or_publishes_when_refused(
    system: tuple[Stack, str], amqp: AbstractRobustConnection
) -> None:
    stack, api = system
    async with stack.http.get(f"{api}/openapi.json") as response:
        document = await response.json()
    operations = [
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    started = time.monotonic()
    ingress_batch = draw(ingress_requests(), INGRESS_REQUESTS)
    api_batch = draw(api_requests(operations), API_REQUESTS)
    drawn = time.monotonic()

    async with listening(amqp, INBOUND_EXCHANGE, "inbound.#") as published:
        ingress = await fire(stack.http, stack.ingress, ingress_batch)
        # Every accepted MO was confirmed before its answer: the queue holds them all by now.
        assert await queue_length(amqp, published) == ingress.mo_accepted
    api_outcome = await fire(stack.http, api, api_batch)

    print(
        f"fuzz: drawn in {drawn - started:.1f} s, sent in {time.monotonic() - drawn:.1f} s; "
        f"ingress {ingress.requests} requests {sorted(ingress.by_status.items())}, "
        f"{ingress.mo_accepted} MO accepted; api {api_outcome.requests} requests "
        f"{sorted(api_outcome.by_status.items())}"
    )
    assert ingress.failures + api_outcome.failures == []
    assert ingress.requests + api_outcome.requests >= 10_000

    for base in (stack.ingress, api, stack.router, stack.outbound, stack.gateway):
        async with stack.http.get(f"{base}/healthz") as response:
            assert response.status == 200, base
    assert await Phone(stack, "+15557654321").text("ECHO still here") == "still here"
