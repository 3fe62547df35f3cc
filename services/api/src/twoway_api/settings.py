from __future__ import annotations

from pydantic import Field, SecretStr

from twoway.settings import TwowaySettings


class ApiSettings(TwowaySettings):
    """Settings of the api (`TWOWAY_` environment variables)."""

    port: int = Field(default=8081, ge=0, le=65535)
    api_token: SecretStr = Field(
        min_length=1,
        description="The bearer token every call but /openapi.json and health needs "
        "(TWOWAY_API_TOKEN; required: the api does not start without one)",
    )
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest request body")
    idempotency_key_retention_seconds: float = Field(
        default=7 * 86_400.0, ge=60, description="How long POST /messages remembers a key"
    )
    dead_letter_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a dead-letter list or replay may wait on the broker before it "
        "answers 503",
    )
