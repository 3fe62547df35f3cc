"""The whole system as OS processes, each under a restarting supervisor: RabbitMQ (a private
node from `twoway_devstack`, started again with the same data after it dies), SecantusDB (not
killed, so not supervised) and every service, on free ports, logs in the run's folder."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from benchmarks.e2e import wait_ready
from tests.chaos.supervisor import Supervised
from tests.support.references import REFERENCE_SECRET
from tests.support.stack import gateways_file
from twoway_devstack.processes import free_ports, start_process, stop_process
from twoway_devstack.rabbitmq import RabbitNode, rabbitmq_node
from twoway_devstack.secantus import run_secantus

API_TOKEN = "chaos-api-token"
DATABASE = "twoway_chaos"
SERVICE_RESTART_SECONDS = 1.0
BROKER_RESTART_SECONDS = 3.0
PROGRAMS = {
    "gateway-sim": "twoway-gateway-sim",
    "ingress": "twoway-ingress",
    "outbound": "twoway-outbound",
    "echo": "twoway-echo",
    "broadcaster": "twoway-broadcaster",
    "api": "twoway-api",
    "router": "twoway-router",
}
"""Every service, by the name it is killed by; the router last, once the echo adapter has
registered its handlers."""
REPLICAS = {"router-2": "twoway-router", "outbound-2": "twoway-outbound"}
"""Second replicas, started for part of the run."""
ENVIRONMENT = {
    # A dead worker's broadcast is resumed once its lease expires: soon, within the run; small
    # batches make the fan-out last long enough to be killed in the middle of it.
    "broadcaster": {"TWOWAY_LEASE_SECONDS": "3", "TWOWAY_BATCH_SIZE": "50"},
}


IN_DOUBT_SECONDS = 5.0
"""The simulator reports each MT at once, so a send in doubt (outbound killed during it) with no
report within this is one whose request never left: sent again (`in_doubt: resend_unreported`)."""


@dataclass
class Stack:
    folder: Path
    broker: Supervised
    env: dict[str, str]
    ports: dict[str, int]
    http: aiohttp.ClientSession
    mongo_url: str
    rabbit: RabbitNode
    services: dict[str, Supervised] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    async def start(self, name: str) -> None:
        """Start the service `name` under a supervisor; return once it is ready."""
        env = {**self.env, **ENVIRONMENT.get(name, {}), "TWOWAY_PORT": str(self.ports[name])}
        argv = [str(Path(sys.executable).parent / {**PROGRAMS, **REPLICAS}[name])]
        log_path = self.folder / f"{name}.log"
        service = Supervised(
            name,
            lambda: start_process(argv, env=env, log_path=log_path, cwd=self.folder),
            lambda process: stop_process(process, what=name),
            SERVICE_RESTART_SECONDS,
        )
        self.services[name] = service
        service.start()
        await self.ready(name)

    async def ready(self, name: str) -> None:
        """Until its /readyz answers 200 (a minute at most)."""
        await wait_ready(self.http, {name: self.ports[name]})

    async def stop(self, name: str) -> None:
        await self.services.pop(name).stop()


@contextlib.asynccontextmanager
async def running_stack(folder: Path) -> AsyncIterator[Stack]:
    """Every service of PROGRAMS started and ready; everything stopped when the block exits."""
    names = [*PROGRAMS, *REPLICAS]
    mongo_port, amqp_port, dist_port, *service_ports = free_ports(3 + len(names))
    ports = dict(zip(names, service_ports, strict=True))
    node = f"chaos-{amqp_port}@localhost"
    with (
        run_secantus(folder / "mongo", port=mongo_port) as mongo_url,
        rabbitmq_node(
            folder / "rabbitmq", node=node, port=amqp_port, dist_port=dist_port
        ) as rabbit,
    ):
        broker = Supervised("broker", rabbit.start, rabbit.stop, BROKER_RESTART_SECONDS)
        broker.start()
        async with contextlib.AsyncExitStack() as cleanup:
            cleanup.push_async_callback(broker.stop)
            await broker.restarted()
            await asyncio.to_thread(rabbit.await_ready, broker.process)
            gateway = f"http://127.0.0.1:{ports['gateway-sim']}"
            ingress = f"http://127.0.0.1:{ports['ingress']}"
            env = {
                **os.environ,
                "TWOWAY_AMQP_URL": rabbit.url,
                "TWOWAY_MONGO_URL": mongo_url,
                "TWOWAY_MONGO_DATABASE": DATABASE,
                "TWOWAY_LOG_LEVEL": "WARNING",
                "TWOWAY_GATEWAYS_FILE": str(gateways_file_for(folder, gateway, ingress)),
                "TWOWAY_RECEIVE_GATEWAY": "sim",
                "TWOWAY_INGRESS_URL": ingress,
                "TWOWAY_REFERENCE_SECRET": REFERENCE_SECRET,
                "TWOWAY_API_TOKEN": API_TOKEN,
            }
            http = await cleanup.enter_async_context(aiohttp.ClientSession())
            stack = Stack(folder, broker, env, ports, http, mongo_url, rabbit)
            cleanup.push_async_callback(_stop_services, stack)
            *others, router = PROGRAMS
            await asyncio.gather(*(stack.start(name) for name in others))
            await stack.start(router)
            yield stack


def gateways_file_for(folder: Path, gateway: str, ingress: str) -> Path:
    """The simulator as gateway, reporting delivery to ingress."""
    return gateways_file(
        folder,
        gateway,
        ingress,
        in_doubt="resend_unreported",
        in_doubt_timeout=IN_DOUBT_SECONDS,
    )


async def _stop_services(stack: Stack) -> None:
    for name in reversed(list(stack.services)):
        await stack.stop(name)
