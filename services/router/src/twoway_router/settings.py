from __future__ import annotations

from pydantic import Field

from twoway.settings import WorkerSettings


class RouterSettings(WorkerSettings):
    """Settings of the router (`TWOWAY_` environment variables)."""

    port: int = Field(default=9101, ge=0, le=65535)
    registry_refresh_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Reload the handler table this often, besides on every sms.control message",
    )
