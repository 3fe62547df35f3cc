"""Outbound replicas as separate processes against a gateway that timestamps every send.

Used by the rate-limit test (the limit holds across processes), the in-doubt tests (a process
killed during a send) and `benchmarks/outbound_rate`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web

from tests.support.numbers import TEST_DESTINATIONS
from tests.support.references import REFERENCE_SECRET
from tests.support.servers import serving
from twoway.broker import Publisher
from twoway.messages import OutboundSMS
from twoway.topology import OUTBOUND_EXCHANGE, declare_exchanges, outbound_key
from twoway_devstack.processes import free_ports


@dataclass
class TimestampingGateway:
    """A gateway that answers 200 and notes when each send arrived (wall clock) and to whom."""

    arrivals: list[float] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    expected: int = 0
    all_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, request: web.Request) -> web.Response:
        self.arrivals.append(time.time())
        self.recipients.append(request.query["to"])
        if len(self.arrivals) >= self.expected:
            self.all_arrived.set()
        return web.Response(text="OK")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/send", self.send)
        return app


@asynccontextmanager
async def timestamping_gateway() -> AsyncIterator[tuple[TimestampingGateway, str]]:
    gateway = TimestampingGateway()
    async with serving(gateway.app()) as url:
        yield gateway, url


@contextmanager
def outbound_processes(
    folder: Path,
    environment: dict[str, str],
    gateway_url: str,
    rate: float | None,
    replicas: int,
) -> Iterator[list[int]]:
    """`replicas` outbound processes sending to `gateway_url` at `rate` segments/s in all."""
    gateways = folder / "gateways.yaml"
    gateways.write_text(
        "default_gateway: limited\ngateways:\n  - id: limited\n    type: mobilefirst-http\n"
        f"    url: {gateway_url}/send\n    destinations: {TEST_DESTINATIONS}\n"
        + (f"    rate_limit: {rate}\n" if rate else "")
    )
    ports = free_ports(replicas)
    processes = [start_outbound(folder, environment, gateways, port) for port in ports]
    try:
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)


def start_outbound(
    folder: Path, environment: dict[str, str], gateways: Path, port: int
) -> subprocess.Popen[bytes]:
    """An outbound process on `port` with the `gateways` file, logging to `folder`."""
    env = {
        **os.environ,
        **environment,
        "TWOWAY_PORT": str(port),
        "TWOWAY_LOG_LEVEL": "WARNING",
        "TWOWAY_GATEWAYS_FILE": str(gateways),
        "TWOWAY_REFERENCE_SECRET": REFERENCE_SECRET,
    }
    log = (folder / f"outbound-{port}.log").open("wb")
    command = [sys.executable, "-m", "twoway_outbound"]
    return subprocess.Popen(command, env=env, stdout=log, stderr=log)


async def wait_ready(ports: list[int], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        for port in ports:
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the service on port {port} is not ready")
                await asyncio.sleep(0.1)


async def publish_messages(connection: AbstractRobustConnection, count: int) -> None:
    publisher = await Publisher.open(connection, confirm_timeout=10)
    await declare_exchanges(publisher.channel)

    async def publish(number: int) -> None:
        message = OutboundSMS(to=f"+1555{number:07d}", text="rate limited")
        await publisher.publish(
            message, exchange=OUTBOUND_EXCHANGE, routing_key=outbound_key("limited")
        )

    for start in range(0, count, 200):  # confirms awaited 200 at a time
        await asyncio.gather(*(publish(n) for n in range(start, min(start + 200, count))))
    await publisher.channel.close()


async def wait_for_arrivals(gateway: TimestampingGateway, count: int, within: float) -> None:
    """Until `count` sends arrived, or `within` seconds passed."""
    gateway.expected = count
    if len(gateway.arrivals) < count:
        gateway.all_arrived.clear()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(gateway.all_arrived.wait(), within)


@dataclass(frozen=True)
class RateFigures:
    sends: int
    saturated_windows: list[int]
    """Sends in each whole one-second window after the first that began with at least a
    second's worth of sends still to come (the tail, when the backlog runs out, says nothing
    about the limit)."""
    overall: float
    """Sends per second from the first send to the last."""


def rate_figures(arrivals: list[float], rate: float) -> RateFigures:
    ordered = sorted(arrivals)
    per_window = Counter(math.floor(arrival) for arrival in ordered)
    first = min(per_window)
    saturated = []
    for window in range(first + 1, max(per_window)):
        still_to_come = len(ordered) - bisect.bisect_left(ordered, float(window))
        if still_to_come >= rate:
            saturated.append(per_window[window])
    span = ordered[-1] - ordered[0]
    return RateFigures(len(ordered), saturated, (len(ordered) - 1) / span if span else 0.0)
