"""RabbitMQ and MongoDB (a single-node replica set) in testcontainers, when Docker answers."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import docker

from twoway_devstack.processes import say

RABBITMQ_IMAGE = "rabbitmq:3.13"
MONGODB_IMAGE = "mongodb/mongodb-atlas-local:8.0"


def docker_answers() -> bool:
    """True when a Docker engine answers a ping (fails within about 2 s otherwise)."""
    try:
        client = docker.from_env(timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def rabbitmq_container() -> Iterator[str]:
    """A throwaway RabbitMQ container; yields its AMQP URL."""
    from testcontainers.community.rabbitmq import RabbitMqContainer

    started = time.monotonic()
    say(f"starting a {RABBITMQ_IMAGE} container ...")
    with RabbitMqContainer(RABBITMQ_IMAGE) as container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(container.port)
        url = f"amqp://{container.username}:{container.password}@{host}:{port}/"
        say(f"RabbitMQ container ready at {url} in {time.monotonic() - started:.1f} s")
        yield url


@contextlib.contextmanager
def mongodb_container() -> Iterator[str]:
    """A throwaway MongoDB Atlas Local container (a single-node replica set); yields its URL."""
    from testcontainers.community.mongodb import MongoDBAtlasLocalContainer

    started = time.monotonic()
    say(f"starting a {MONGODB_IMAGE} container ...")
    with MongoDBAtlasLocalContainer(MONGODB_IMAGE) as container:
        url = container.get_connection_url()
        say(f"MongoDB container ready in {time.monotonic() - started:.1f} s")
        yield url
