"""A TCP proxy in front of the test's MongoDB, which a test cuts to take the database away from
a running service: every connection through it drops, and new ones are refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit


class DatabaseProxy:
    def __init__(self, mongo_url: str) -> None:
        self._parts = urlsplit(mongo_url)
        self._server: asyncio.Server | None = None
        self._port = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen (again after `cut`, on the same port: the database is back)."""
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    @property
    def mongo_url(self) -> str:
        """The database's URL through this proxy (a direct connection: the client never looks
        for other replica-set members, which it would reach around the proxy)."""
        assert self._port, "the proxy was never started"
        user = self._parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self._port}" if user else f"127.0.0.1:{self._port}"
        query = "&".join(filter(None, (self._parts.query, "directConnection=true")))
        return urlunsplit(self._parts._replace(netloc=netloc, path="/", query=query))

    def cut(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._parts.hostname is not None
        upstream_reader, upstream_writer = await asyncio.open_connection(
            self._parts.hostname, self._parts.port
        )
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    finally:
        sink.close()


@asynccontextmanager
async def database_proxy(mongo_url: str) -> AsyncIterator[DatabaseProxy]:
    """A proxy to the (single) server of `mongo_url`, cut when the block ends."""
    proxy = DatabaseProxy(mongo_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        proxy.cut()
