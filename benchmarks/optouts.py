"""Outbound's opt-out check: cost per message and memory of the in-memory opt-out list.

Outbound keeps an index of every opt-out in memory (`twoway.optouts.OptOutIndex`) so that a
message to a number that never opted out costs no database round trip (one that may be refused
is decided on that number's opt-outs read from the database). This prints what the index costs:
microseconds per check (a number not opted out, the common case; and one that is) and bytes per
opt-out, for 10,000 and 100,000 opted-out numbers.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc

from twoway.optouts import OptOutIndex

SIZES = (10_000, 100_000)
RUNS = 7
CHECKS_PER_RUN = 50_000


def phone(index: int) -> str:
    return f"+1415{index:07d}"


def build(count: int) -> OptOutIndex:
    return OptOutIndex((phone(index), "12345") for index in range(count))


def median_microseconds(index: OptOutIndex, phones: list[str]) -> float:
    figures = []
    for _ in range(RUNS):
        started = time.perf_counter()
        for number in phones:
            index.may_refuse(number, "12345")
        figures.append((time.perf_counter() - started) / len(phones) * 1e6)
    return statistics.median(figures)


def main() -> None:
    print(f"{'opt-outs':>9} {'bytes/opt-out':>14} {'µs not opted out':>17} {'µs opted out':>13}")
    for size in SIZES:
        tracemalloc.start()
        index = build(size)
        memory = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        clear = [phone(size + n) for n in range(CHECKS_PER_RUN)]
        blocked = [phone(n % size) for n in range(CHECKS_PER_RUN)]
        print(
            f"{size:>9,} {memory / size:>14,.0f} {median_microseconds(index, clear):>17.2f}"
            f" {median_microseconds(index, blocked):>13.2f}"
        )
