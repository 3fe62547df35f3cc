"""The whole system through a broker outage: every service reaches RabbitMQ through a TCP proxy
that the test cuts (every connection drops, new ones are refused) and then opens again.

While the broker is away every service is unready; once it is back, every one is ready and
consuming again, without a restart: an SMS goes through ingress, the router, the adapter (the
SDK) and outbound to the gateway, and a broadcast through the api, the broadcaster and outbound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection

from tests.e2e.test_broadcast import ANN, BOB, NEWS, clean_queues, running_system, texts_to
from tests.integration.test_api import broker_url_through
from tests.support.proxy import database_proxy
from twoway.settings import TwowaySettings
from twoway_devstack import ServerUrls

pytestmark = [pytest.mark.e2e, pytest.mark.rabbit, pytest.mark.mongo]

S = TypeVar("S", bound=TwowaySettings)

RECOVERY_SECONDS = 10.0
"""The bound of issue 12's crash suite: from the broker's return to every service consuming."""
JOINED = "You joined NEWS. Text LEAVE NEWS to stop."


async def readiness(http: aiohttp.ClientSession, urls: list[str]) -> list[int]:
    statuses = []
    for url in urls:
        async with http.get(f"{url}/readyz") as response:
            statuses.append(response.status)
    return statuses


async def until_every(
    http: aiohttp.ClientSession, urls: list[str], status: int, within: float
) -> None:
    """Return once every service's /readyz answers `status`; fail if not within `within` s."""
    deadline = asyncio.get_running_loop().time() + within
    while (statuses := await readiness(http, urls)) != [status] * len(urls):
        assert asyncio.get_running_loop().time() < deadline, dict(zip(urls, statuses, strict=True))
        await asyncio.sleep(0.05)


async def test_every_service_consumes_again_once_the_broker_is_back(
    make_settings: Callable[..., Any],
    servers: ServerUrls,
    amqp: AbstractRobustConnection,
    tmp_path: Path,
) -> None:
    await clean_queues(amqp)
    async with database_proxy(servers.amqp_url) as proxy:
        proxied_url = broker_url_through(proxy, servers.amqp_url)

        def through_proxy(settings_class: type[S], **overrides: Any) -> S:
            settings: S = make_settings(settings_class, **{"amqp_url": proxied_url, **overrides})
            return settings

        async with running_system(through_proxy, tmp_path) as system:
            stack = system.stack
            services = [
                stack.ingress,
                stack.router,
                stack.outbound,
                *stack.adapters.values(),
                system.api,
                system.broadcaster,
            ]
            await stack.send_mo(ANN, "JOIN news")
            assert texts_to(await stack.received(1), ANN) == [JOINED]

            proxy.cut()
            await until_every(stack.http, services, 503, within=5.0)
            await proxy.start()
            back = asyncio.get_running_loop().time()
            await until_every(stack.http, services, 200, within=RECOVERY_SECONDS)

            await stack.send_mo(BOB, "JOIN news")  # ingress, the router, the adapter, outbound
            assert texts_to(await stack.received(2), BOB) == [JOINED]
            status, accepted = await system.call(
                "POST", f"/event-sources/{NEWS}/notifications", json={"text": "Back again"}
            )
            assert status == 202  # the api; then the broadcaster and outbound
            await system.finished(accepted["broadcast_id"], sent=2)
            recovered = asyncio.get_running_loop().time() - back
            messages = await stack.received(4)
            assert sorted(texts_to(messages, ANN) + texts_to(messages, BOB)) == sorted(
                [JOINED, JOINED, "Back again", "Back again"]
            )
    assert recovered < RECOVERY_SECONDS
