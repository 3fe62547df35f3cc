"""Group commit: concurrent submissions share writes, and every caller gets its own result."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from twoway.batching import GroupCommit


class Recorder:
    def __init__(self, fail: bool = False, short: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.short = short

    async def flush(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await asyncio.sleep(0)
        if self.fail:
            raise ConnectionError("database gone")
        results = [item * 10 for item in items]
        return results[1:] if self.short else results


async def test_concurrent_submissions_share_batches_and_get_their_own_results() -> None:
    recorder = Recorder()
    commit = GroupCommit(recorder.flush)
    results = await asyncio.gather(*(commit.submit(item) for item in range(10)))
    assert results == [item * 10 for item in range(10)]
    assert recorder.batches == [list(range(10))]


async def test_what_arrives_during_a_write_goes_in_the_next_batch() -> None:
    recorder = Recorder()
    commit = GroupCommit(recorder.flush)
    first = asyncio.create_task(commit.submit(0))
    await asyncio.sleep(0)  # the first write starts
    await asyncio.gather(first, *(commit.submit(item) for item in range(1, 4)))
    assert recorder.batches == [[0], [1, 2, 3]]


async def test_an_idle_writer_writes_at_once() -> None:
    recorder = Recorder()
    commit = GroupCommit(recorder.flush)
    assert await commit.submit(1) == 10
    assert await commit.submit(2) == 20
    assert recorder.batches == [[1], [2]]


async def test_batches_are_capped() -> None:
    recorder = Recorder()
    commit = GroupCommit(recorder.flush, max_batch=4)
    await asyncio.gather(*(commit.submit(item) for item in range(10)))
    assert [len(batch) for batch in recorder.batches] == [4, 4, 2]


async def test_a_failed_write_fails_every_caller_of_that_batch_only() -> None:
    recorder = Recorder(fail=True)
    commit = GroupCommit(recorder.flush)
    results = await asyncio.gather(
        *(commit.submit(item) for item in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, ConnectionError) for result in results)
    recorder.fail = False
    assert await commit.submit(7) == 70


async def test_a_flush_that_answers_for_fewer_items_fails_its_callers() -> None:
    commit = GroupCommit(Recorder(short=True).flush)
    with pytest.raises(RuntimeError, match="1 results for 2"):
        await asyncio.gather(commit.submit(1), commit.submit(2))
