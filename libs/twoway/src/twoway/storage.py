"""MongoDB access through PyMongo's async API (`AsyncMongoClient`; Motor is deprecated)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from twoway.settings import TwowaySettings

Document = dict[str, Any]


def mongo_client(settings: TwowaySettings, app_name: str) -> AsyncMongoClient[Document]:
    """A client; it connects lazily, so creating one never blocks or fails."""
    return AsyncMongoClient(
        settings.mongo_url, appname=app_name, tz_aware=True, serverSelectionTimeoutMS=5000
    )


def database(
    client: AsyncMongoClient[Document], settings: TwowaySettings
) -> AsyncDatabase[Document]:
    return client[settings.mongo_database]


async def ping(client: AsyncMongoClient[Document]) -> bool:
    """Whether the server answers (for readiness checks)."""
    try:
        await client.admin.command("ping")
    except Exception:
        return False
    return True


def stored_now() -> datetime:
    """The current UTC time at the millisecond precision MongoDB keeps, so that what a write
    returns equals what a later read gives."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000)
