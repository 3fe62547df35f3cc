"""Outbound replicas as separate processes against a gateway that timestamps every send.

Used by the rate-limit test (the limit holds across processes) and `benchmarks/outbound_rate`.
"""

from __future__ import annotations

import asyncio
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

from tests.support.servers import serving
from twoway.broker import Publisher
from twoway.messages import OutboundSMS
from twoway.topology import OUTBOUND_EXCHANGE, declare_exchanges, outbound_key
from twoway_devstack.processes import free_ports


@dataclass
class TimestampingGateway:
    """A gateway that answers 200 and notes when each send arrived (wall clock)."""

    arrivals: list[float] = field(default_factory=list)

    async def send(self, _request: web.Request) -> web.Response:
        self.arrivals.append(time.time())
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
        f"    url: {gateway_url}/send\n" + (f"    rate_limit: {rate}\n" if rate else "")
    )
    ports = free_ports(replicas)
    processes = []
    for port in ports:
        env = {
            **os.environ,
            **environment,
            "TWOWAY_PORT": str(port),
            "TWOWAY_LOG_LEVEL": "WARNING",
            "TWOWAY_GATEWAYS_FILE": str(gateways),
        }
        log = (folder / f"outbound-{port}.log").open("wb")
        command = [sys.executable, "-m", "twoway_outbound"]
        processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=log))
    try:
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)


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
                    raise RuntimeError(f"outbound on port {port} not ready")
                await asyncio.sleep(0.1)


async def publish_messages(connection: AbstractRobustConnection, count: int) -> None:
    publisher = await Publisher.open(connection, confirm_timeout=10)
    await declare_exchanges(publisher.channel)
    for number in range(count):
        message = OutboundSMS(to=f"+1555{number:07d}", text="rate limited")
        await publisher.publish(
            message, exchange=OUTBOUND_EXCHANGE, routing_key=outbound_key("limited")
        )
    await publisher.channel.close()


async def wait_for_arrivals(gateway: TimestampingGateway, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while len(gateway.arrivals) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


@dataclass(frozen=True)
class RateFigures:
    sends: int
    full_windows: list[int]
    """Sends in each whole one-second window between the first and the last send."""
    overall: float
    """Sends per second from the first send to the last."""


def rate_figures(arrivals: list[float]) -> RateFigures:
    per_window = Counter(math.floor(arrival) for arrival in arrivals)
    first, last = min(per_window), max(per_window)
    full = [per_window[window] for window in range(first + 1, last)]
    span = max(arrivals) - min(arrivals)
    return RateFigures(len(arrivals), full, (len(arrivals) - 1) / span if span else 0.0)
