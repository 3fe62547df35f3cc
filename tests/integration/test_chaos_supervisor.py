"""The crash test's supervisor (`tests.chaos.supervisor`) with real OS processes."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from tests.chaos.supervisor import Supervised, exited
from twoway_devstack.processes import start_process, stop_process

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def sleeper(folder: Path, restart_delay: float = 0.0) -> Supervised:
    return Supervised(
        "sleeper",
        lambda: start_process(SLEEPER, env={}, log_path=folder / "sleeper.log", cwd=folder),
        lambda process: stop_process(process, what="sleeper"),
        restart_delay,
    )


async def test_a_killed_process_is_started_again_after_the_delay(tmp_path: Path) -> None:
    supervised = sleeper(tmp_path, restart_delay=0.2)
    supervised.start()
    await supervised.restarted()
    first = supervised.process
    killed_at = supervised.kill()
    restarted_at = await asyncio.wait_for(supervised.restarted(), 10)
    try:
        assert first.returncode == -9  # SIGKILL, reaped by the supervisor
        assert supervised.process.pid != first.pid
        assert restarted_at - killed_at >= 0.2
        assert supervised.process.poll() is None
    finally:
        await supervised.stop()
    assert supervised.process.returncode is not None


async def test_a_held_process_starts_again_only_once_released(tmp_path: Path) -> None:
    supervised = sleeper(tmp_path)
    supervised.start()
    await supervised.restarted()
    first = supervised.process
    supervised.kill(hold=True)
    await exited(first)
    for _ in range(20):  # let the supervisor's loop run on to where it would restart
        await asyncio.sleep(0)
    released_at = time.time()
    supervised.release()
    try:
        assert await asyncio.wait_for(supervised.restarted(), 10) >= released_at
    finally:
        await supervised.stop()


async def test_a_stopped_process_is_not_started_again(tmp_path: Path) -> None:
    supervised = sleeper(tmp_path)
    supervised.start()
    started_at = await supervised.restarted()
    await supervised.stop()
    assert supervised.process.returncode == -15  # SIGTERM
    assert supervised.started_at == started_at  # not started again


async def test_killing_a_process_never_started_is_refused(tmp_path: Path) -> None:
    supervised = sleeper(tmp_path)
    with pytest.raises(RuntimeError, match="never started"):
        supervised.kill()
