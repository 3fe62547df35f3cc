"""twoway-devstack: run the Procfile against real servers, or just start the servers."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from honcho.environ import expand_processes, parse_procfile
from honcho.manager import Manager
from honcho.printer import Printer

from twoway_devstack.servers import AMQP_URL_VARIABLE, MONGO_URL_VARIABLE, provide_servers

# honcho's return codes when it stopped the processes because of SIGINT / SIGTERM
_STOPPED_BY_SIGNAL = (130, 143)


def _ignore_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _unwind(signum: int, frame: FrameType | None) -> None:
    """First SIGINT or SIGTERM: unwind, so the servers stop; later ones must not cut that short."""
    _ignore_signals()
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    procfile: Path = args.procfile
    processes = parse_procfile(procfile.read_text()).processes
    if not processes:
        raise RuntimeError(f"no processes in {procfile}")
    with provide_servers(
        args.data_dir, persistent=True, amqp_port=args.amqp_port, mongo_port=args.mongo_port
    ) as urls:
        env = {**os.environ, AMQP_URL_VARIABLE: urls.amqp_url, MONGO_URL_VARIABLE: urls.mongo_url}
        manager = Manager(Printer(sys.stdout, colour=sys.stdout.isatty()))
        for process in expand_processes(processes):
            manager.add_process(
                process.name, process.cmd, quiet=process.quiet, env={**env, **process.env}
            )
        manager.loop()  # its own SIGINT/SIGTERM handlers stop the processes, then it returns
        _ignore_signals()
        returncode = int(manager.returncode or 0)
    return 0 if returncode in _STOPPED_BY_SIGNAL else returncode


def _servers(args: argparse.Namespace) -> int:
    with provide_servers(
        args.data_dir,
        persistent=args.persistent,
        amqp_port=args.amqp_port,
        mongo_port=args.mongo_port,
    ) as urls:
        print(f"{AMQP_URL_VARIABLE}={urls.amqp_url}", flush=True)
        print(f"{MONGO_URL_VARIABLE}={urls.mongo_url}", flush=True)
        while True:
            signal.pause()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twoway-devstack",
        description="Real RabbitMQ and MongoDB servers for Twoway development and tests: "
        "TWOWAY_AMQP_URL / TWOWAY_MONGO_URL when set, else testcontainers when Docker "
        "answers, else project-local RabbitMQ (Debian package) and SecantusDB.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="start the servers (data kept in --data-dir), then the Procfile with honcho"
    )
    run.add_argument("--procfile", type=Path, default=Path("Procfile"))
    servers = commands.add_parser(
        "servers", help="start the servers, print TWOWAY_*_URL lines, wait for Ctrl-C"
    )
    servers.add_argument(
        "--persistent", action="store_true", help="keep the data in --data-dir, fixed ports"
    )
    for command in (run, servers):
        command.add_argument("--data-dir", type=Path, default=Path(".run"))
        command.add_argument("--amqp-port", type=int, help="default: 5672 if kept, else free")
        command.add_argument("--mongo-port", type=int, help="default: 27017 if kept, else free")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGINT, _unwind)
    signal.signal(signal.SIGTERM, _unwind)
    try:
        return _run(args) if args.command == "run" else _servers(args)
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, OSError) as error:
        print(f"twoway-devstack: {error}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
