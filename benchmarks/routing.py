"""Matching cost per inbound SMS against 10, 1,000 and 10,000 registered handlers.

The handler mix is what an operator's table looks like: mostly keywords (some with aliases, some
scoped to a recipient), a few percent regexes on the text, one catch-all, and a hostile regex,
`(a+)+$`, that would hang a backtracking engine. The SMS mix hits keywords, regexes and the
catch-all. Each figure is the median over several runs of the mean cost per SMS.

A second table answers "does the hostile regex slow matching?": the same table with and without
that handler, against ordinary SMS and against 1,000 `a`s followed by `b`.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence

from twoway.messages import HandlerRegistration, InboundSMS
from twoway.routing import RoutingTable

SIZES = (10, 1_000, 10_000)
RUNS = 7
MESSAGES_PER_RUN = 20_000
HOSTILE_PATTERN = "(a+)+$"


def handlers(count: int, *, hostile: bool = True) -> list[HandlerRegistration]:
    """`count` handlers: 95% keywords (a fifth with aliases, a tenth scoped to a recipient),
    4% regexes on the text, the rest keyword + parameter; a catch-all; the hostile regex."""
    table = []
    for index in range(count):
        kind = index % 100
        if kind < 4:
            spec: dict[str, object] = {"text": {"regex": f"^(?i)order {index} [0-9]+$"}}
        elif kind == 4:
            spec = {"keyword": f"KW{index}", "smsc": {"regex": "^voda"}}
        elif kind % 5 == 0:
            spec = {"keyword": [f"KW{index}", f"ALIAS{index}"]}
        elif kind % 10 == 1:
            spec = {"keyword": f"KW{index}", "recipient": "12345"}
        else:
            spec = {"keyword": f"KW{index}"}
        table.append(
            HandlerRegistration(adapter="bench", handler=f"h{index}", filter=spec, sequence=index)
        )
    table.append(
        HandlerRegistration(adapter="bench", handler="catch-all", priority=-1, sequence=count)
    )
    if hostile:
        table.append(
            HandlerRegistration(
                adapter="bench",
                handler="hostile",
                filter={"text": {"regex": HOSTILE_PATTERN}},
                sequence=count + 1,
            )
        )
    return table


def messages(count: int, handler_count: int, rng: random.Random) -> list[InboundSMS]:
    """Keyword hits (60%), regex hits (20%), unknown keywords that fall to the catch-all (20%)."""
    result = []
    for _ in range(count):
        index = rng.randrange(handler_count)
        roll = rng.random()
        if roll < 0.6:
            text = f"kw{index} some words after the keyword"
        elif roll < 0.8:
            index -= index % 100  # a regex handler's index
            text = f"ORDER {index} {rng.randrange(10**6)}"
        else:
            text = f"nobody{index} registered this keyword"
        result.append(
            InboundSMS(
                gateway_id="sim",
                sender="+14155552671",
                recipient="12345",
                text=text,
                params={"smsc": "vodafone"},
            )
        )
    return result


def median_microseconds(table: RoutingTable, sample: Sequence[InboundSMS]) -> float:
    """The median, over `RUNS` runs, of the mean time to match one SMS of `sample`."""
    figures = []
    for _ in range(RUNS):
        started = time.perf_counter()
        for message in sample:
            table.match(message)
        figures.append((time.perf_counter() - started) / len(sample) * 1e6)
    return statistics.median(figures)


def main() -> None:
    rng = random.Random(20261125)
    print(f"{'handlers':>9} {'build ms':>9} {'median µs/SMS':>14}")
    for size in SIZES:
        started = time.perf_counter()
        table = RoutingTable(handlers(size))
        build = (time.perf_counter() - started) * 1e3
        sample = messages(MESSAGES_PER_RUN, size, rng)
        print(f"{size:>9,} {build:>9.1f} {median_microseconds(table, sample):>14.2f}")

    print(f"\nhostile regex {HOSTILE_PATTERN!r}, 10,000 handlers: median µs/SMS")
    ordinary = messages(MESSAGES_PER_RUN, 10_000, rng)
    hostile_text = [InboundSMS(gateway_id="sim", sender="+14155552671", text="a" * 1_000 + "b")] * (
        MESSAGES_PER_RUN // 10
    )
    print(f"{'table':>22} {'ordinary SMS':>13} {'a*1000 + b':>11}")
    for label, hostile in (("without hostile regex", False), ("with hostile regex", True)):
        table = RoutingTable(handlers(10_000, hostile=hostile))
        print(
            f"{label:>22} {median_microseconds(table, ordinary):>13.2f}"
            f" {median_microseconds(table, hostile_text):>11.2f}"
        )
