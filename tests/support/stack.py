"""The whole system on real sockets inside the test's event loop, for end-to-end tests.

    async with running_stack(make_settings, tmp_path, adapters) as stack:
        message_id = await stack.send_mo("+15551234567", "ECHO hi")
        [reply] = await stack.received(1)

The gateway simulator plays the gateway (and, under `/backend`, the demo bank back-end);
ingress, router, outbound and the given adapters run against the test's RabbitMQ and MongoDB.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.numbers import TEST_DESTINATIONS
from tests.support.servers import serving
from twoway.gateways.config import InDoubtPolicy
from twoway.sdk import Adapter, AdapterSettings
from twoway_gateway_sim.settings import GatewaySimSettings
from twoway_gateway_sim.simulator import create_app as create_gateway_sim
from twoway_ingress.app import create_app as create_ingress
from twoway_ingress.settings import IngressSettings
from twoway_outbound.app import create_app as create_outbound
from twoway_outbound.settings import OutboundSettings
from twoway_router.app import create_app as create_router
from twoway_router.settings import RouterSettings

SHORT_CODE = "12345"

AdaptersFor = Callable[[str], Iterable[tuple[Adapter, AdapterSettings]]]
"""Given the gateway simulator's base URL, the adapters to run with their settings."""


def just(adapter: Adapter, make_settings: Callable[..., Any]) -> AdaptersFor:
    """Run one adapter, with default settings."""
    return lambda _gateway: [(adapter, make_settings(AdapterSettings))]


@dataclass(frozen=True)
class Stack:
    ingress: str
    gateway: str
    router: str
    outbound: str
    adapters: Mapping[str, str]
    """Each adapter's base URL (health and metrics), by adapter name."""
    http: aiohttp.ClientSession

    async def send_mo(self, sender: str, text: str, recipient: str = SHORT_CODE) -> str:
        """Post an SMS to ingress as the gateway does; the message id ingress gave it."""
        fields = {"from": sender, "to": recipient, "text": text}
        async with self.http.post(f"{self.ingress}/receiveSMS", data=fields) as response:
            assert response.status == 202, await response.text()
            message_id: str = (await response.json())["message_id"]
        return message_id

    async def received(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        """The MT messages the gateway simulator received, once there are `count` of them."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            async with self.http.get(f"{self.gateway}/messages") as response:
                messages: list[dict[str, Any]] = await response.json()
            if len(messages) >= count or asyncio.get_running_loop().time() > deadline:
                return messages
            await asyncio.sleep(0.05)


class Phone:
    """A texter: sends an SMS and waits for the one reply it brings."""

    def __init__(self, stack: Stack, number: str) -> None:
        self.stack = stack
        self.number = number
        self.seen = 0

    async def text(self, text: str) -> str:
        await self.stack.send_mo(self.number, text)
        deadline = asyncio.get_running_loop().time() + 10
        while asyncio.get_running_loop().time() < deadline:
            mine = [m["text"] for m in await self.stack.received(0) if m["to"] == self.number]
            if len(mine) > self.seen:
                self.seen += 1
                return str(mine[self.seen - 1])
            await asyncio.sleep(0.05)
        raise AssertionError(f"no reply to {text!r}")


def gateways_file(
    directory: Path,
    gateway_url: str,
    ingress_url: str | None = None,
    in_doubt: InDoubtPolicy = "hold",
    in_doubt_timeout: float = 3600,
) -> Path:
    """The simulator as gateway `sim`; with `ingress_url`, asked for delivery reports there."""
    path = directory / "gateways.yaml"
    reports = f"    status_param: dlr_url\n    public_url: {ingress_url}\n" if ingress_url else ""
    reports += f"    in_doubt: {in_doubt}\n    in_doubt_timeout: {in_doubt_timeout:g}\n"
    path.write_text(
        "default_gateway: sim\n"
        "gateways:\n"
        "  - id: sim\n"
        "    type: mobilefirst-http\n"
        f"    url: {gateway_url}/sendSMS\n"
        f"    default_sender: '{SHORT_CODE}'\n"
        "    inbound: {open: true}\n"
        "    timeout: 2\n"
        f"    destinations: {TEST_DESTINATIONS}\n" + reports
    )
    return path


@asynccontextmanager
async def running_stack(
    make_settings: Callable[..., Any],
    directory: Path,
    adapters: AdaptersFor,
    *,
    delivery_reports: bool = False,
    outbound_settings: Mapping[str, Any] | None = None,
    ingress_settings: Mapping[str, Any] | None = None,
) -> AsyncIterator[Stack]:
    """Every service, started in dependency order (the router last, once adapters registered).

    `delivery_reports`: the simulator reports each MT delivered to ingress's status endpoint.
    `outbound_settings`, `ingress_settings`: overrides of those services' settings (short
    `retry_delays`, a larger `max_body_bytes`, say)."""
    async with AsyncExitStack() as running:
        http = await running.enter_async_context(aiohttp.ClientSession())
        gateway = await running.enter_async_context(
            serving(create_gateway_sim(make_settings(GatewaySimSettings)))
        )
        gateways = gateways_file(directory, gateway)
        ingress = await running.enter_async_context(
            serving(
                create_ingress(
                    make_settings(
                        IngressSettings,
                        **{
                            "max_body_bytes": 2048,
                            "gateways_file": gateways,
                            "receive_gateway": "sim",
                            **(ingress_settings or {}),
                        },
                    )
                )
            )
        )
        if delivery_reports:
            gateways = gateways_file(directory, gateway, ingress)
        outbound = await running.enter_async_context(
            serving(
                create_outbound(
                    make_settings(
                        OutboundSettings, gateways_file=gateways, **(outbound_settings or {})
                    )
                )
            )
        )
        adapter_urls = {
            adapter.name: await running.enter_async_context(serving(adapter.create_app(settings)))
            for adapter, settings in adapters(gateway)
        }
        router = await running.enter_async_context(
            serving(create_router(make_settings(RouterSettings)))
        )
        yield Stack(ingress, gateway, router, outbound, adapter_urls, http)
