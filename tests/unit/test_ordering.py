"""Per-key ordering: one key's work runs one at a time, in order; other keys run alongside."""

from __future__ import annotations

import asyncio
import contextlib

from twoway.ordering import KeyedSequencer


async def run(
    sequencer: KeyedSequencer, key: str, label: str, log: list[str], delay: float
) -> None:
    async with sequencer.hold(key):
        log.append(f"start {label}")
        await asyncio.sleep(delay)
        log.append(f"end {label}")


async def test_one_keys_work_runs_in_order_one_at_a_time() -> None:
    sequencer = KeyedSequencer()
    log: list[str] = []
    # the slowest first: without the sequencer it would finish last
    await asyncio.gather(
        *(run(sequencer, "a", str(n), log, delay) for n, delay in enumerate((0.03, 0.01, 0.0)))
    )
    assert log == ["start 0", "end 0", "start 1", "end 1", "start 2", "end 2"]
    assert len(sequencer) == 0


async def test_other_keys_run_alongside() -> None:
    sequencer = KeyedSequencer()
    log: list[str] = []
    await asyncio.gather(run(sequencer, "a", "a", log, 0.02), run(sequencer, "b", "b", log, 0.0))
    assert log == ["start a", "start b", "end b", "end a"]


async def test_a_waiter_cancelled_does_not_let_the_next_one_jump_the_queue() -> None:
    sequencer = KeyedSequencer()
    log: list[str] = []
    first = asyncio.create_task(run(sequencer, "a", "first", log, 0.03))
    await asyncio.sleep(0)
    second = asyncio.create_task(run(sequencer, "a", "second", log, 0.0))
    await asyncio.sleep(0)
    third = asyncio.create_task(run(sequencer, "a", "third", log, 0.0))
    await asyncio.sleep(0)
    second.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await second
    await asyncio.gather(first, third)
    assert log == ["start first", "end first", "start third", "end third"]
    assert len(sequencer) == 0


async def test_a_failure_releases_the_key() -> None:
    sequencer = KeyedSequencer()
    with contextlib.suppress(ValueError):
        async with sequencer.hold("a"):
            raise ValueError("handler failed")
    log: list[str] = []
    await run(sequencer, "a", "next", log, 0.0)
    assert log == ["start next", "end next"]


async def test_no_key_runs_at_once_unordered() -> None:
    sequencer = KeyedSequencer()
    log: list[str] = []

    async def unordered(label: str, delay: float) -> None:
        async with sequencer.hold(None):
            log.append(f"start {label}")
            await asyncio.sleep(delay)
            log.append(f"end {label}")

    await asyncio.gather(unordered("slow", 0.02), unordered("fast", 0.0))
    assert log == ["start slow", "start fast", "end fast", "end slow"]
    assert len(sequencer) == 0
