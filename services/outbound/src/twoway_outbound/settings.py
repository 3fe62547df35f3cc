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
    optout_refresh_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Reload the whole opt-out list this often, besides per sms.control change",
    )
    sent_ledger_ttl: int = Field(
        default=7 * 24 * 3600, ge=60, description="Seconds the record of a sent message is kept"
    )
    message_log_ttl: int = Field(
        default=30 * 24 * 3600, ge=60, description="Seconds a message's history is kept"
    )
    message_log_prefetch: int = Field(
        default=512, ge=1, description="Events the message-log writer holds (its batch size)"
    )
