from __future__ import annotations

from pydantic import Field

from twoway.settings import ReferenceSettings, WorkerSettings


class OutboundSettings(WorkerSettings, ReferenceSettings):
    """Settings of the outbound service (`TWOWAY_` environment variables)."""

    port: int = Field(default=9102, ge=0, le=65535)
    retry_delays: list[int] = Field(
        default=[1, 5, 30, 120, 600],
        min_length=1,
        description="Seconds to wait before retry 1, 2, ...; the last repeats (capped backoff); "
        "each wait is jittered (x0.8, x1.0 or x1.2)",
    )
    max_attempts: int = Field(default=6, ge=1, description="Send attempts before a message fails")
    retry_max_age: float = Field(
        default=4 * 3600,
        gt=0,
        description="Seconds after its creation past which a message is not retried (expired)",
    )
    optout_refresh_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Reload the whole opt-out list this often, besides per sms.control change",
    )
    message_log_ttl: int = Field(
        default=30 * 24 * 3600,
        ge=60,
        description="Seconds a message's history is kept (also the record that keeps a "
        "redelivered message from being sent twice: keep it longer than any retry)",
    )
