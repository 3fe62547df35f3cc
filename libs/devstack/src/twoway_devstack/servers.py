"""Find or start the RabbitMQ and MongoDB servers that `make run` and the tests use."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from twoway_devstack.containers import docker_answers, mongodb_container, rabbitmq_container
from twoway_devstack.processes import free_ports, say
from twoway_devstack.rabbitmq import run_rabbitmq
from twoway_devstack.secantus import run_secantus

AMQP_URL_VARIABLE = "TWOWAY_AMQP_URL"
MONGO_URL_VARIABLE = "TWOWAY_MONGO_URL"
DEFAULT_AMQP_PORT = 5672
DEFAULT_MONGO_PORT = 27017
DIST_PORT_OFFSET = 20000  # RabbitMQ's own rule: Erlang distribution on the AMQP port + 20000
MAX_PORT = 65535
PERSISTENT_NODE = "twoway@localhost"


@dataclass(frozen=True)
class ServerUrls:
    amqp_url: str
    mongo_url: str


@contextlib.contextmanager
def provide_servers(
    data_dir: Path,
    *,
    persistent: bool,
    amqp_port: int | None = None,
    mongo_port: int | None = None,
) -> Iterator[ServerUrls]:
    """Env URLs, else testcontainers when Docker answers, else project-local servers under data_dir.

    Each of TWOWAY_AMQP_URL and TWOWAY_MONGO_URL wins on its own when set; only the missing
    servers are started. persistent=False: throwaway servers on free ports with their data in a
    temporary folder under data_dir, removed afterwards. persistent=True: node twoway@localhost,
    data kept in data_dir/rabbitmq and data_dir/mongo, ports 5672 (+20000 for Erlang
    distribution) and 27017 unless given. Containers are always throwaway. Everything started
    here is stopped when the block exits, also on exceptions and KeyboardInterrupt.
    """
    data_dir = data_dir.resolve()
    amqp_url = os.environ.get(AMQP_URL_VARIABLE) or None
    mongo_url = os.environ.get(MONGO_URL_VARIABLE) or None
    for variable, url in ((AMQP_URL_VARIABLE, amqp_url), (MONGO_URL_VARIABLE, mongo_url)):
        if url is not None:
            say(f"using {variable} from the environment")
    with contextlib.ExitStack() as stack:
        if amqp_url is None or mongo_url is None:
            if docker_answers():
                if persistent:
                    say("Docker answers: using throwaway containers (their data is not kept)")
                if mongo_url is None:
                    mongo_url = stack.enter_context(mongodb_container())
                if amqp_url is None:
                    amqp_url = stack.enter_context(rabbitmq_container())
            else:
                data_dir.mkdir(parents=True, exist_ok=True)
                if persistent:
                    folder, node = data_dir, PERSISTENT_NODE
                    mongo_port = mongo_port or DEFAULT_MONGO_PORT
                    amqp_port = amqp_port or DEFAULT_AMQP_PORT
                    dist_port = amqp_port + DIST_PORT_OFFSET
                    if dist_port > MAX_PORT:
                        dist_port = free_ports(1)[0]
                else:
                    folder = Path(
                        stack.enter_context(
                            tempfile.TemporaryDirectory(
                                prefix="devstack-", dir=data_dir, ignore_cleanup_errors=True
                            )
                        )
                    )
                    spare_mongo, spare_amqp, dist_port = free_ports(3)
                    mongo_port = mongo_port or spare_mongo
                    amqp_port = amqp_port or spare_amqp
                    node = f"twoway-{amqp_port}@localhost"
                if mongo_url is None:
                    mongo_url = stack.enter_context(run_secantus(folder / "mongo", port=mongo_port))
                if amqp_url is None:
                    amqp_url = stack.enter_context(
                        run_rabbitmq(
                            folder / "rabbitmq", node=node, port=amqp_port, dist_port=dist_port
                        )
                    )
        yield ServerUrls(amqp_url=amqp_url, mongo_url=mongo_url)
