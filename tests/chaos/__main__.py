"""`make chaos` (`python -m tests.chaos`): crash every part of the running system under load,
and count what was lost, what was sent twice and how long each recovery took.

RabbitMQ, SecantusDB and every service run as separate OS processes, each service and the broker
under a supervisor that starts it again after it dies (1 s; the broker 3 s), as Kubernetes does.
MO flows to ingress's /receiveSMS at a steady rate like a gateway posts it (retrying on 503 and
connection errors), the echo adapter answering each one. One at a time, with SIGKILL: ingress,
the router, the echo adapter, outbound, the router again while an adapter's handlers change
(restarted only once they changed), the router and outbound with a second replica of each
running, the broadcaster in the middle of a broadcast, the api with sends in flight, and the
broker. After each kill the harness waits for its sentinel (a reply to an MO posted after the
restart) and a few seconds of steady load; at the end, for every MO accepted to be answered
(or a deadline). Then it prints, per kill, the MO accepted, those never answered, replies sent
twice, broadcast messages and api sends missing or sent twice, and the recovery time; it exits
1 on any loss, duplicate or recovery over its target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from pathlib import Path

from pymongo import AsyncMongoClient

from benchmarks.broadcast import bulk_subscribe, phone
from tests.chaos.ledger import Expected, Key, Phase, Targets, report, table
from tests.chaos.stack import API_TOKEN, DATABASE, Stack, running_stack
from tests.chaos.traffic import BROADCAST_NUMBERS, ApiSends, MOLoad, deliveries
from twoway.messages import EventSource, HandlerRegistration
from twoway.registry import HandlerRegistry
from twoway.storage import Document
from twoway.subscriptions import EventSourceRegistry

EVENT_SOURCE = "chaos.News"
RECOVERY_WAIT = 30.0
"""How long the harness waits for a recovery before it moves on (and the table says so)."""
POLL_SECONDS = 0.5


@dataclass
class Run:
    stack: Stack
    load: MOLoad
    settle: float
    phases: list[Phase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    arrivals: set[Key] = field(default_factory=set)
    read: int = 0
    """MT read from the gateway simulator so far."""

    async def arrived(self) -> Set[Key]:
        """What reached the gateway so far. Only what is new is read: listing every MT twice a
        second took enough of the gateway simulator (and of the 2 cores) to slow the sends the
        harness was waiting for."""
        new = await deliveries(self.stack.http, self.stack.url("gateway-sim"), offset=self.read)
        self.read += len(new)
        self.arrivals.update((delivery.to, delivery.text) for delivery in new)
        return self.arrivals

    async def recovered(self, since: float) -> None:
        """The sentinel: a reply to an MO posted at or after `since` reached the gateway."""
        deadline = time.monotonic() + RECOVERY_WAIT
        while not self.load.answered_since(since, await self.arrived()):
            if time.monotonic() > deadline:
                self.notes.append(f"no reply within {RECOVERY_WAIT:g} s of {since:.1f}")
                return
            await asyncio.sleep(POLL_SECONDS)

    async def steady(self) -> None:
        """Steady load between two kills, so each kill meets work in flight."""
        await asyncio.sleep(self.settle)

    async def crash(self, name: str, label: str, *, broker: bool = False) -> None:
        """SIGKILL `name` (the service, or the broker), wait for its restart and recovery."""
        target = self.stack.broker if broker else self.stack.services[name]
        killed_at = target.kill()
        restarted_at = await target.restarted()
        await self.recovered(restarted_at)
        self.phases.append(Phase(label, killed_at, restarted_at, broker=broker))
        await self.steady()


async def router_with_new_handlers(run: Run, mongo: AsyncMongoClient[Document]) -> None:
    """Kill the router; while it is down the echo adapter's handler set changes (it also answers
    `REPEAT`); start the router again: it must route `REPEAT` from what it loads at start."""
    router = run.stack.services["router"]
    killed_at = router.kill(hold=True)
    widened = HandlerRegistration(
        adapter="echo", handler="echo", filter={"keyword": ["ECHO", "REPEAT"]}
    )
    await HandlerRegistry(mongo[DATABASE]).replace_adapter_handlers("echo", [widened])
    run.load.keyword = "REPEAT"
    router.release()
    restarted_at = await router.restarted()
    await run.recovered(restarted_at)
    run.phases.append(Phase("router, handlers changed", killed_at, restarted_at))
    await run.steady()
    run.load.keyword = "ECHO"


async def broadcaster_mid_broadcast(run: Run, subscribers: int) -> None:
    """Broadcast to `subscribers` through the api; kill the broadcaster once it queued some."""
    http, api = run.stack.http, run.stack.url("api")
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    text = f"chaos broadcast {uuid.uuid4().hex[:8]}"
    url = f"{api}/event-sources/{EVENT_SOURCE}/notifications"
    async with http.post(url, json={"text": text}, headers=headers) as response:
        if response.status != 202:
            raise RuntimeError(f"the broadcast was refused: {await response.text()}")
        broadcast_id = (await response.json())["broadcast_id"]
    progress_url = f"{api}/broadcasts/{broadcast_id}"

    async def progress() -> dict[str, object]:
        async with http.get(progress_url, headers=headers) as response:
            body: dict[str, object] = await response.json()
            return body

    deadline = time.monotonic() + RECOVERY_WAIT
    while (state := await progress())["queued"] == 0 and state["status"] != "completed":
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broadcast did not start within {RECOVERY_WAIT:g} s")
        await asyncio.sleep(0.02)
    run.notes.append(
        f"broadcaster killed with {state['queued']} of {subscribers} queued ({state['status']})"
    )
    broadcaster = run.stack.services["broadcaster"]
    killed_at = broadcaster.kill()
    restarted_at = await broadcaster.restarted()
    await run.recovered(restarted_at)
    deadline = time.monotonic() + RECOVERY_WAIT
    while (state := await progress())["status"] not in ("completed", "failed"):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    run.notes.append(
        f"broadcast {state['status']} {time.time() - restarted_at:.1f} s after the "
        f"broadcaster's restart: queued {state['queued']}"
    )
    keys = frozenset((phone(BROADCAST_NUMBERS + n), text) for n in range(subscribers))
    run.phases.append(
        Phase(
            "broadcaster, mid-broadcast",
            killed_at,
            restarted_at,
            expected=Expected("broadcast", keys),
        )
    )
    await run.steady()


async def api_mid_send(run: Run, count: int) -> None:
    """Send `count` SMS through the api, 200 a second; kill the api once a fifth are accepted."""
    sends = ApiSends(run.stack.http, run.stack.url("api"), API_TOKEN, uuid.uuid4().hex[:8])
    sending = asyncio.create_task(sends.send(count, rate=200))
    await asyncio.wait_for(sends.accepted(count // 5), RECOVERY_WAIT)
    api = run.stack.services["api"]
    in_flight = sends.pending()
    killed_at = api.kill()
    restarted_at = await api.restarted()
    await sending
    await sends.settle(RECOVERY_WAIT)
    await run.recovered(restarted_at)
    run.notes.append(f"api killed with {in_flight} sends in flight")
    expected = Expected(
        "api sends", frozenset(item.key for item in sends.attempted), sends.accepted_times()
    )
    run.phases.append(
        Phase("api, sends in flight", killed_at, restarted_at, entry="api", expected=expected)
    )
    await run.steady()


async def drain(run: Run, within: float) -> None:
    """Until every accepted MO and every expected message arrived, or `within` seconds."""
    wanted = set(run.load.accepted_keys())
    for phase in run.phases:
        if phase.expected is not None:
            wanted |= phase.expected.keys
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        arrived = await run.arrived()
        if all(key in arrived for key in wanted):
            return
        await asyncio.sleep(POLL_SECONDS)
    queues = await asyncio.to_thread(run.stack.rabbit.busy_queues)
    run.notes.append(
        f"drain: not everything arrived within {within:g} s; queues holding messages "
        f"(name, ready, unacknowledged, consumers): {'; '.join(queues) or 'none'}"
    )


async def chaos(folder: Path, args: argparse.Namespace) -> int:
    targets = Targets()
    started = time.monotonic()
    async with (
        running_stack(folder) as stack,
        AsyncMongoClient[Document](stack.mongo_url, tz_aware=True) as mongo,
    ):
        print(f"chaos: stack up in {time.monotonic() - started:.0f} s", flush=True)
        db = mongo[DATABASE]
        await EventSourceRegistry(db).replace_adapter_sources(
            "chaos", [EventSource(name=EVENT_SOURCE, adapter="chaos")]
        )
        await bulk_subscribe(
            db, EVENT_SOURCE, BROADCAST_NUMBERS, BROADCAST_NUMBERS + args.subscribers
        )
        load = MOLoad(stack.http, stack.url("ingress"), args.rate)
        run = Run(stack, load, args.settle)
        load.start_load()
        run.phases.append(Phase("none (steady load)", time.time()))
        await run.recovered(run.phases[0].started_at)
        await run.steady()

        for number in range(1, args.rounds + 1):
            for name in ("ingress", "router", "echo", "outbound"):
                print(f"chaos: killing {name}", flush=True)
                await run.crash(name, name if args.rounds == 1 else f"{name} #{number}")
        print("chaos: killing the router, changing handlers while it is down", flush=True)
        await router_with_new_handlers(run, mongo)
        print("chaos: a second router and outbound; killing the first of each", flush=True)
        await asyncio.gather(stack.start("router-2"), stack.start("outbound-2"))
        await run.crash("router", "router (1 of 2)")
        await run.crash("outbound", "outbound (1 of 2)")
        await asyncio.gather(stack.stop("router-2"), stack.stop("outbound-2"))
        print("chaos: killing the broadcaster mid-broadcast", flush=True)
        await broadcaster_mid_broadcast(run, args.subscribers)
        print("chaos: killing the api with sends in flight", flush=True)
        await api_mid_send(run, args.api_sends)
        print("chaos: killing the broker", flush=True)
        await run.crash("broker", "broker", broker=True)

        ended_at = time.time()
        await load.stop_load()
        await load.settle(RECOVERY_WAIT)
        await drain(run, args.drain)
        records = await deliveries(stack.http, stack.url("gateway-sim"))
    reports = report(run.phases, ended_at, load.mos(), records, targets)
    never = sum(item.not_accepted for item in reports)
    print(table(reports, targets))
    for note in run.notes:
        print(f"note: {note}")
    print(
        f"chaos: {len(load.mos())} MO posted at {args.rate:g}/s, {never} never accepted; "
        f"{len(records)} MT at the gateway; {time.monotonic() - started:.0f} s in all",
        flush=True,
    )
    return 1 if any(item.problems for item in reports) else 0


@contextlib.contextmanager
def run_folder(logs: Path | None) -> Iterator[Path]:
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        yield logs.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="twoway-chaos-") as folder:
        yield Path(folder)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--rate", type=float, default=80.0, help="MO per second")
    parser.add_argument(
        "--rounds", type=int, default=1, help="kills of ingress, router, echo and outbound each"
    )
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of load between kills")
    parser.add_argument("--subscribers", type=int, default=3000, help="the broadcast's size")
    parser.add_argument("--api-sends", type=int, default=200)
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for the rest")
    parser.add_argument("--logs", type=Path, help="keep every process's log here")
    args = parser.parse_args()
    with run_folder(args.logs) as folder:
        sys.exit(asyncio.run(chaos(folder, args)))


if __name__ == "__main__":
    main()
