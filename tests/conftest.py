"""Fixtures shared by every test layer.

Real servers, found in the design notes' order: TWOWAY_AMQP_URL / TWOWAY_MONGO_URL when set,
testcontainers when a Docker engine answers, else project-local RabbitMQ and SecantusDB started
once per test session (see twoway_devstack). Unit tests use none of this.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import pytest
from aio_pika.abc import AbstractRobustConnection
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.broker import delete_queues, topology_queues
from tests.support.references import REFERENCE_SECRET
from twoway.broker import connect
from twoway.settings import TwowaySettings
from twoway.storage import Document
from twoway_devstack import ServerUrls, provide_servers

S = TypeVar("S", bound=TwowaySettings)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerUrls]:
    with provide_servers(tmp_path_factory.mktemp("servers"), persistent=False) as urls:
        yield urls


@pytest.fixture
def database_name() -> str:
    """A database of the test's own, so tests never see each other's documents."""
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_settings(servers: ServerUrls, database_name: str) -> Callable[..., Any]:
    """The one settings factory: `make_settings(RouterSettings, prefetch=8)`."""

    def make(settings_class: type[S], **overrides: Any) -> S:
        values: dict[str, Any] = {
            "amqp_url": servers.amqp_url,
            "mongo_url": servers.mongo_url,
            "mongo_database": database_name,
            "log_format": "console",
            "port": 0,
            "reference_secret": REFERENCE_SECRET,
            **overrides,
        }
        return settings_class(**values)

    return make


@pytest.fixture
async def amqp(servers: ServerUrls) -> AsyncIterator[AbstractRobustConnection]:
    """A connection to the test broker; the topology's queues are deleted before each test."""
    connection = await connect(servers.amqp_url, "tests")
    await delete_queues(connection, topology_queues())
    yield connection
    await connection.close()


@pytest.fixture
async def mongo_db(
    servers: ServerUrls, database_name: str
) -> AsyncIterator[AsyncDatabase[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(servers.mongo_url, tz_aware=True)
    yield client[database_name]
    await client.drop_database(database_name)
    await client.close()
