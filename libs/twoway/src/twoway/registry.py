"""The handler registry: which handlers each adapter registered, kept in MongoDB.

Adapters replace their whole handler set at start-up (idempotent: a restart or a second replica
writes the same set; a new deploy's set replaces the old one). Every router replica keeps the
registry in memory as a `RoutingTable` and reloads it when a `HandlersChanged` control message
arrives, so matching never queries the database.
"""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from twoway.messages import HandlerRegistration
from twoway.routing import validate_registration
from twoway.storage import Document

HANDLERS = "handlers"
COUNTERS = "counters"
SEQUENCE_ATTEMPTS = 5


class HandlerRegistry:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._handlers = db[HANDLERS]
        self._counters = db[COUNTERS]

    async def ensure_indexes(self) -> None:
        await self._handlers.create_index(
            [("adapter", ASCENDING), ("handler", ASCENDING)], unique=True
        )

    async def _next_sequence(self) -> int:
        # Replicas starting together race to create the counter: the loser of the upsert gets
        # a duplicate key error (MongoDB) or no document (SecantusDB); its next try increments.
        for _ in range(SEQUENCE_ATTEMPTS):
            try:
                counter = await self._counters.find_one_and_update(
                    {"_id": "handler_sequence"},
                    {"$inc": {"value": 1}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue
            if counter is not None:
                value: int = counter["value"]
                return value
        raise RuntimeError("could not allocate a handler sequence number")

    async def replace_adapter_handlers(
        self, adapter: str, registrations: Sequence[HandlerRegistration]
    ) -> None:
        """Make `registrations` the whole handler set of `adapter`.

        A handler keeps its registration order across restarts; a new handler goes last.
        Raises `FilterError` before writing anything if a filter is invalid.
        """
        for registration in registrations:
            if registration.adapter != adapter:
                raise ValueError(f"handler {registration.handler!r} belongs to another adapter")
            validate_registration(registration)
        names = [registration.handler for registration in registrations]
        for registration in registrations:
            existing = await self._handlers.find_one(
                {"adapter": adapter, "handler": registration.handler}, {"sequence": 1}
            )
            sequence = existing["sequence"] if existing else await self._next_sequence()
            document = registration.model_copy(update={"sequence": sequence}).model_dump()
            await self._handlers.replace_one(
                {"adapter": adapter, "handler": registration.handler}, document, upsert=True
            )
        await self._handlers.delete_many({"adapter": adapter, "handler": {"$nin": names}})

    async def load_all(self) -> list[HandlerRegistration]:
        cursor = self._handlers.find({}, {"_id": 0})
        return [HandlerRegistration.model_validate(document) async for document in cursor]
