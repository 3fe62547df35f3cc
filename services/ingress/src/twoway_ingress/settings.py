from __future__ import annotations

from pydantic import Field

from twoway.settings import TwowaySettings


class IngressSettings(TwowaySettings):
    """Settings of the ingress service (`TWOWAY_` environment variables)."""

    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest request body")
    retry_after_seconds: int = Field(default=5, ge=1, description="Retry-After on a 503")
    long_message_ttl_seconds: int = Field(
        default=3600,
        ge=60,
        description="How long the parts of a long SMS posted part by part wait for the rest",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Proxy networks whose X-Forwarded-For names the client (gateway allow-lists)",
    )
    inbound_limit_sync_seconds: float = Field(
        default=0.25,
        gt=0,
        le=10,
        description="How often a replica shares its inbound-limit counts through MongoDB",
    )
    inbound_limit_keys: int = Field(
        default=50_000,
        ge=100,
        description="Inbound-limit counts (a sender's or gateway's window) kept in memory",
    )
