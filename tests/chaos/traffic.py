"""What the crash test drives: MO at a steady rate as a gateway posts it, sends through the
api as a back-end makes them, and what the gateway simulator received."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Container, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from benchmarks.broadcast import phone
from tests.chaos.ledger import MO, Delivery, Key
from tests.support.stack import SHORT_CODE

BROADCAST_NUMBERS = 5_000_000
"""MO come from phone(n) below it; the broadcast's subscribers are phone(BROADCAST_NUMBERS + n)."""
API_NUMBERS = 6_000_000
"""The api's sends go to phone(API_NUMBERS + n)."""
RETRY_SECONDS = 0.5
"""A gateway's (or client's) pause before it posts again what was not accepted."""
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)
RETRIED_STATUSES = frozenset({409, 429, 500, 502, 503, 504})


@dataclass
class Attempted:
    """A request the harness keeps making until it is accepted."""

    key: Key
    first_posted: float
    accepted_at: float | None = None


async def post_until_accepted(
    http: aiohttp.ClientSession,
    attempted: Attempted,
    method: str,
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    json: object = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Post again after a connection error or a retried status (after its Retry-After), as
    gateways and careful clients do; any other refusal is the harness's own bug."""
    while True:
        pause = RETRY_SECONDS
        try:
            async with http.request(
                method, url, params=params, json=json, headers=headers, timeout=REQUEST_TIMEOUT
            ) as response:
                if response.status < 300:
                    attempted.accepted_at = time.time()
                    return
                if response.status not in RETRIED_STATUSES:
                    raise RuntimeError(f"{url} refused: {response.status} {await response.text()}")
                pause = retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(pause)


def retry_after(header: str | None) -> float:
    """The pause a refusal asks for in seconds (a gateway honours it), else RETRY_SECONDS."""
    if header is not None and header.isdigit():
        return float(header)
    return RETRY_SECONDS


class Requests:
    """Requests in flight, each retried until accepted; the ones still retrying when the run
    ends are cancelled (never accepted)."""

    def __init__(self) -> None:
        self.attempted: list[Attempted] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._errors: list[BaseException] = []
        self._progress = asyncio.Event()

    def start(self, attempted: Attempted, request: Coroutine[Any, Any, None]) -> None:
        self.attempted.append(attempted)
        task = asyncio.create_task(request)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self._errors.append(error)
        self._progress.set()

    async def accepted(self, count: int) -> None:
        """Wait until `count` requests were accepted."""
        while len(self.accepted_keys()) < count:
            self._progress.clear()
            await self._progress.wait()

    async def settle(self, within: float) -> None:
        """Wait for the requests in flight, at most `within` seconds, then cancel the rest;
        raises the first request that failed otherwise than by not being accepted."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=within)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._errors:
            raise self._errors[0]

    def pending(self) -> int:
        return len(self._tasks)

    def accepted_keys(self) -> frozenset[Key]:
        return frozenset(item.key for item in self.attempted if item.accepted_at is not None)


class MOLoad(Requests):
    """`rate` MO a second to ingress's /receiveSMS, each from its own number with its own text
    (`<keyword> chaos <n>`, answered `chaos <n>` by the echo adapter)."""

    def __init__(self, http: aiohttp.ClientSession, ingress: str, rate: float) -> None:
        super().__init__()
        self._http = http
        self._url = f"{ingress}/receiveSMS"
        self._rate = rate
        self.keyword = "ECHO"
        self._running: asyncio.Task[None] | None = None

    def start_load(self) -> None:
        self._running = asyncio.create_task(self._run(), name="MO load")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        for number in range(BROADCAST_NUMBERS):
            sender, reply = phone(number), f"chaos {number}"
            query = {"from": sender, "to": SHORT_CODE, "text": f"{self.keyword} {reply}"}
            attempted = Attempted((sender, reply), time.time())
            self.start(
                attempted,
                post_until_accepted(self._http, attempted, "GET", self._url, params=query),
            )
            next_at += 1 / self._rate
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def stop_load(self) -> None:
        if self._running is not None:
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._running

    def mos(self) -> list[MO]:
        return [MO(item.key, item.first_posted, item.accepted_at) for item in self.attempted]

    def answered_since(self, since: float, arrived: Container[Key]) -> bool:
        """Whether some MO first posted at or after `since` has been answered."""
        return any(item.key in arrived for item in self.attempted if item.first_posted >= since)


class ApiSends(Requests):
    """`count` sends through the api's POST /messages at `rate` a second, each with its own
    Idempotency-Key, repeated with the same key until accepted."""

    def __init__(self, http: aiohttp.ClientSession, api: str, token: str, tag: str) -> None:
        super().__init__()
        self._http = http
        self._url = f"{api}/messages"
        self._headers = {"Authorization": f"Bearer {token}"}
        self._tag = tag

    async def send(self, count: int, rate: float) -> None:
        for number in range(count):
            to, text = phone(API_NUMBERS + number), f"api chaos {number}"
            attempted = Attempted((to, text), time.time())
            headers = {**self._headers, "Idempotency-Key": f"chaos-{self._tag}-{number}"}
            body = {"to": to, "text": text}
            self.start(
                attempted,
                post_until_accepted(
                    self._http, attempted, "POST", self._url, json=body, headers=headers
                ),
            )
            await asyncio.sleep(1 / rate)

    def accepted_times(self) -> tuple[float, ...]:
        return tuple(item.accepted_at for item in self.attempted if item.accepted_at is not None)


async def deliveries(http: aiohttp.ClientSession, gateway: str, offset: int = 0) -> list[Delivery]:
    """Every MT the gateway simulator received, after the first `offset`."""
    listing = f"{gateway}/messages?offset={offset}"
    async with http.get(listing, timeout=REQUEST_TIMEOUT) as response:
        records = await response.json()
    return [
        Delivery(
            record["to"], record["text"], datetime.fromisoformat(record["received_at"]).timestamp()
        )
        for record in records
    ]
