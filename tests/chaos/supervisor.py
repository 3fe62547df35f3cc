"""A restarting supervisor for one OS process, as Kubernetes restarts a container: when the
process dies, start it again `restart_delay` seconds later, for as long as the run lasts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable

Spawn = Callable[[], "subprocess.Popen[bytes]"]
"""Starts the process in a session of its own (`twoway_devstack.processes.start_process`)."""
Terminate = Callable[["subprocess.Popen[bytes]"], None]
"""Stops the process gracefully, for good (blocking)."""


class Supervised:
    def __init__(
        self, name: str, spawn: Spawn, terminate: Terminate, restart_delay: float = 1.0
    ) -> None:
        self.name = name
        self._spawn = spawn
        self._terminate = terminate
        self._restart_delay = restart_delay
        self._process: subprocess.Popen[bytes] | None = None
        self._started = asyncio.Event()
        self._released = asyncio.Event()
        self._released.set()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.started_at = 0.0
        """When the current process was started (epoch seconds)."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"supervise {self.name}")

    async def _run(self) -> None:
        while not self._stopping:
            # Forked from the event loop's thread: the child's parent-death signal follows the
            # thread that forked it, and that thread lives as long as the run.
            self._process = self._spawn()
            self.started_at = time.time()
            self._started.set()
            await exited(self._process)
            if self._stopping:
                return
            await self._released.wait()
            await asyncio.sleep(self._restart_delay)

    def kill(self, *, hold: bool = False) -> float:
        """SIGKILL the process and everything in its session; with `hold`, start it again only
        once `release` is called. Returns when the signal was sent (epoch seconds)."""
        process = self.process
        self._started.clear()
        if hold:
            self._released.clear()
        killed_at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return killed_at

    def release(self) -> None:
        self._released.set()

    async def restarted(self) -> float:
        """Wait until the process killed last was started again; when it was (epoch seconds)."""
        await self._started.wait()
        return self.started_at

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The process started last."""
        if self._process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._process

    async def stop(self) -> None:
        """Stop the process gracefully and supervise it no more."""
        self._stopping = True
        self._released.set()
        if self._process is not None:
            await asyncio.to_thread(self._terminate, self._process)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def exited(process: subprocess.Popen[bytes]) -> None:
    """Wait for `process` to exit, and reap it, without a thread per process (a pidfd becomes
    readable when its process exits)."""
    loop = asyncio.get_running_loop()
    pidfd = os.pidfd_open(process.pid)
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await done
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    process.wait()
