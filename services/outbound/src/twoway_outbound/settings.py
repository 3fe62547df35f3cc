from __future__ import annotations

from pydantic import Field

from twoway.settings import WorkerSettings


class OutboundSettings(WorkerSettings):
    """Settings of the outbound service (`TWOWAY_` environment variables)."""

    port: int = Field(default=9102, ge=0, le=65535)
    retry_delays: list[int] = Field(
        default=[1, 5, 30, 120, 600],
        min_length=1,
        description="Seconds to wait before retry 1, 2, ...; the last repeats (capped backoff)",
    )
    max_attempts: int = Field(default=6, ge=1, description="Send attempts before a message fails")
