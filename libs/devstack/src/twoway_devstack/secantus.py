"""SecantusDB, a MongoDB wire-compatible server, run as its own process (never imported).

SecantusDB is GPL: it is a development and test tool here, never part of an image.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo

from twoway_devstack.processes import (
    LOCALHOST,
    ensure_port_free,
    say,
    start_process,
    stop_process,
    wait_for_port,
)

READY_TIMEOUT = 30.0


def secantus_executable() -> Path:
    """secantusd-py from the environment twoway-devstack is installed in."""
    path = Path(sys.executable).parent / "secantusd-py"
    if not path.exists():
        raise RuntimeError(
            f"{path} is missing: install the twoway-devstack dependencies (uv sync), "
            "or set TWOWAY_MONGO_URL to a MongoDB of your own"
        )
    return path


@contextlib.contextmanager
def run_secantus(folder: Path, *, port: int) -> Iterator[str]:
    """Run SecantusDB with its data in folder/data; yield its MongoDB URL.

    The data survives a restart with the same folder. The server advertises itself as the
    primary of a single-node replica set "secantus", so transactions and change streams work.
    """
    ensure_port_free(port, "SecantusDB (MongoDB)")
    folder.mkdir(parents=True, exist_ok=True)
    # An explicit config file turns off the auto-discovery of ./secantusd.toml, ~/.secantus/...
    config = folder / "secantusd.toml"
    config.write_text("# twoway-devstack: settings come from the command line\n")
    log_path = folder / "secantusd.log"
    argv = [
        str(secantus_executable()),
        *("--config", str(config)),
        *("--host", LOCALHOST, "--port", str(port)),
        *("--storage-path", str(folder / "data")),
    ]
    started = time.monotonic()
    say(f"starting SecantusDB (data and log in {folder}) ...")
    process = start_process(argv, env=os.environ, log_path=log_path, cwd=folder)
    try:
        wait_for_port(process, port, what="SecantusDB", log_path=log_path, timeout=READY_TIMEOUT)
        url = f"mongodb://{LOCALHOST}:{port}/"
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            url, serverSelectionTimeoutMS=int(READY_TIMEOUT * 1000)
        )
        with client:
            client.admin.command("ping")
        say(f"SecantusDB ready at {url} in {time.monotonic() - started:.1f} s")
        yield url
    finally:
        if process.poll() is None:
            started = time.monotonic()
            stop_process(process, what="SecantusDB")
            say(f"SecantusDB stopped in {time.monotonic() - started:.1f} s")
