"""End to end: gateway posts in, replies out, every service as its own process.

Starts throwaway servers (twoway_devstack) and ingress, router, the echo adapter, outbound and the
gateway simulator as separate processes, as `make run` does. Then posts N `ECHO` messages to
/receiveSMS with a fixed concurrency, like a gateway would, and measures:
- accepted/s: posts answered 202 (each confirmed by the broker) per second;
- replies/s: N divided by the time from the first post until the gateway simulator has received
  all N replies (the figure to compare with Kannel's 2,000-3,700 replies/s on the same box).
Prints each round and the median of the rounds, then where the time went over the measured rounds:
CPU milliseconds per reply of every process (RabbitMQ, the database, each service, this client)
and the database operations per reply. The services log JSON at INFO, the production default
(`--log-level WARNING` leaves logging out of the figures). `--profile FOLDER` records a py-spy
profile of every service and of SecantusDB over the measured rounds (py-spy on the PATH; one
collapsed-stack file per process, `py-spy record --format raw`, for speedscope or flamegraph.pl).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from benchmarks.cost import ProcessCpu, database_operations, print_cost
from tests.support.numbers import TEST_DESTINATIONS
from twoway_devstack import provide_servers
from twoway_devstack.processes import free_ports

SERVICES = (
    "twoway-gateway-sim",
    "twoway-ingress",
    "twoway-router",
    "twoway-echo",
    "twoway-outbound",
)


@contextmanager
def running_services(
    folder: Path, amqp_url: str, mongo_url: str, log_level: str
) -> Iterator[tuple[dict[str, int], dict[str, int]]]:
    """Starts every service as its own process; yields their ports and their process ids, by
    service."""
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    gateways = folder / "gateways.yaml"
    gateways.write_text(
        "default_gateway: sim\ngateways:\n  - id: sim\n    type: mobilefirst-http\n"
        f"    url: http://127.0.0.1:{ports['twoway-gateway-sim']}/sendSMS\n"
        "    default_sender: '12345'\n"
        "    inbound: {open: true}\n"
        f"    destinations: {TEST_DESTINATIONS}\n"
    )
    bin_dir = Path(sys.executable).parent
    processes = {}
    for service, port in ports.items():
        env = {
            **os.environ,
            "TWOWAY_AMQP_URL": amqp_url,
            "TWOWAY_MONGO_URL": mongo_url,
            "TWOWAY_PORT": str(port),
            "TWOWAY_LOG_LEVEL": log_level,
            "TWOWAY_LOG_FORMAT": "json",
            "TWOWAY_GATEWAYS_FILE": str(gateways),
            "TWOWAY_RECEIVE_GATEWAY": "sim",
            "TWOWAY_INGRESS_URL": f"http://127.0.0.1:{ports['twoway-ingress']}",
            "TWOWAY_REFERENCE_SECRET": "benchmark-reference-secret",
        }
        log = (folder / f"{service}.log").open("wb")
        processes[service] = subprocess.Popen(
            [str(bin_dir / service)], env=env, stdout=log, stderr=log
        )
    try:
        yield ports, {service: process.pid for service, process in processes.items()}
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(timeout=20)


@contextmanager
def profiled(pids: dict[str, int], folder: Path | None) -> Iterator[None]:
    """Records a py-spy profile of each process in `pids` into `folder` while inside (nothing
    without a folder). Non-blocking sampling: the services are not paused to be sampled."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    profilers = [
        subprocess.Popen(
            [
                *("py-spy", "record", "--pid", str(pid), "--format", "raw", "--nonblocking"),
                *("--output", str(folder / f"{service}.txt")),
            ],
            stdout=subprocess.DEVNULL,
        )
        for service, pid in pids.items()
    ]
    try:
        yield
    finally:
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its profile when interrupted
        for profiler in profilers:
            profiler.wait(timeout=60)


async def wait_ready(http: aiohttp.ClientSession, ports: dict[str, int]) -> None:
    deadline = time.monotonic() + 60
    for port in ports.values():
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"service on port {port} not ready")
            await asyncio.sleep(0.2)


async def one_round(
    http: aiohttp.ClientSession, ingress: str, gateway: str, count: int, concurrency: int
) -> tuple[float, float]:
    """Every text is new (the router drops a repeated sender + recipient + text as a gateway's
    retry), and a round that does not get all its replies within a minute fails."""
    tag = uuid.uuid4().hex[:8]
    async with http.delete(f"{gateway}/messages"):
        pass
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(count):
        queue.put_nowait(number)

    async def poster() -> None:
        while not queue.empty():
            number = queue.get_nowait()
            query = {
                "from": f"+1555{number % 10_000_000:07d}",
                "to": "12345",
                "text": f"ECHO round trip {tag} {number}",
            }
            async with http.get(f"{ingress}/receiveSMS", params=query) as response:
                if response.status != 202:
                    raise RuntimeError(f"ingress answered {response.status}")

    started = time.perf_counter()
    await asyncio.gather(*(poster() for _ in range(concurrency)))
    accepted = time.perf_counter() - started
    deadline = time.monotonic() + 60
    while True:
        async with http.get(f"{gateway}/messages/count") as response:
            got = (await response.json())["count"]
        if got >= count:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {got} of {count} replies arrived within a minute")
        await asyncio.sleep(0.05)
    replied = time.perf_counter() - started
    return count / accepted, count / replied


async def run(
    arguments: argparse.Namespace,
    ports: dict[str, int],
    pids: dict[str, int],
    folder: Path,
    mongo_url: str,
) -> None:
    count, concurrency, rounds = arguments.count, arguments.concurrency, arguments.rounds
    ingress = f"http://127.0.0.1:{ports['twoway-ingress']}"
    gateway = f"http://127.0.0.1:{ports['twoway-gateway-sim']}"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        await wait_ready(http, ports)
        await one_round(http, ingress, gateway, min(count, 500), concurrency)  # warm-up
        accepted_rates, reply_rates = [], []
        processes = ProcessCpu(str(folder))
        cpu_before, operations_before = processes.sample(), database_operations(mongo_url)
        with profiled({**pids, **processes.named("secantusdb")}, arguments.profile):
            for number in range(1, rounds + 1):
                accepted, replies = await one_round(http, ingress, gateway, count, concurrency)
                accepted_rates.append(accepted)
                reply_rates.append(replies)
                print(
                    f"round {number}: {count} SMS, accepted {accepted:,.0f}/s, "
                    f"replies {replies:,.0f}/s",
                    flush=True,
                )
        cpu_after, operations_after = processes.sample(), database_operations(mongo_url)
    print(
        f"median of {rounds}: accepted {statistics.median(accepted_rates):,.0f}/s, "
        f"end-to-end replies {statistics.median(reply_rates):,.0f}/s "
        f"({os.cpu_count()} cores; concurrency {concurrency})",
        flush=True,
    )
    print_cost(
        (cpu_before, cpu_after), (operations_before, operations_after), count * rounds, "reply"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.e2e")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--log-level", default="INFO", choices=["INFO", "WARNING"])
    parser.add_argument("--profile", type=Path, help="a folder for a py-spy profile per service")
    args, _ = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="twoway-bench-") as folder:
        path = Path(folder)
        with (
            provide_servers(path, persistent=False) as urls,
            running_services(path, urls.amqp_url, urls.mongo_url, args.log_level) as (ports, pids),
        ):
            asyncio.run(run(args, ports, pids, path, urls.mongo_url))


if __name__ == "__main__":
    main()
