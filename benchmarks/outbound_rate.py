"""Outbound: the shared per-gateway rate limit across replicas, and unlimited send throughput.

Starts throwaway servers (twoway_devstack), a local gateway that timestamps each send, and N
outbound processes; publishes M single-segment messages and prints the sends in every whole
second while a backlog remained (the limit must hold there, within 10%), and the overall rate.
Then one unlimited replica's throughput (sent ledger and message log included), messages/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.support.outbound_replicas import (
    outbound_processes,
    publish_messages,
    rate_figures,
    timestamping_gateway,
    wait_for_arrivals,
    wait_ready,
)
from twoway.broker import connect
from twoway_devstack import ServerUrls, provide_servers


async def one_run(
    urls: ServerUrls, folder: Path, rate: float | None, replicas: int, count: int, label: str
) -> None:
    environment = {
        "TWOWAY_AMQP_URL": urls.amqp_url,
        "TWOWAY_MONGO_URL": urls.mongo_url,
        "TWOWAY_MONGO_DATABASE": f"bench_{label}",
    }
    connection = await connect(urls.amqp_url, "benchmark")
    async with timestamping_gateway() as (gateway, url):
        with outbound_processes(folder, environment, url, rate, replicas) as ports:
            await wait_ready(ports)
            started = time.perf_counter()
            await publish_messages(connection, count)
            await wait_for_arrivals(gateway, count, within=600)
            elapsed = time.perf_counter() - started
    await connection.close()
    figures = rate_figures(gateway.arrivals, rate or 0)
    if rate is None:
        print(
            f"{label}: {figures.sends} sends, {figures.overall:,.0f}/s from the first send to "
            f"the last ({count / elapsed:,.0f}/s including publishing)",
            flush=True,
        )
        return
    windows = figures.saturated_windows
    print(
        f"{label}: limit {rate}/s, {replicas} replica(s), {figures.sends} sends; each second "
        f"{windows}: min {min(windows)}, max {max(windows)}, mean {statistics.mean(windows):.1f} "
        f"({statistics.mean(windows) / rate - 1:+.1%}); overall {figures.overall:.1f}/s",
        flush=True,
    )


async def run(urls: ServerUrls, folder: Path, rate: float, count: int, unlimited: int) -> None:
    await one_run(urls, folder, rate, 1, count, "one-replica")
    await one_run(urls, folder, rate, 2, count, "two-replicas")
    await one_run(urls, folder, None, 1, unlimited, "unlimited-one-replica")
    print(f"({os.cpu_count()} cores)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.outbound_rate")
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--unlimited", type=int, default=3000)
    args, _ = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="twoway-bench-") as folder:
        path = Path(folder)
        with provide_servers(path, persistent=False) as urls:
            asyncio.run(run(urls, path, args.rate, args.count, args.unlimited))


if __name__ == "__main__":
    main()
