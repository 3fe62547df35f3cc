from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from twoway.settings import ReferenceSettings

SubscribeMode = Literal["off", "gateway", "public"]


class IngressSettings(ReferenceSettings):
    """Settings of the ingress service (`TWOWAY_` environment variables)."""

    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest request body")
    retry_after_seconds: int = Field(default=5, ge=1, description="Retry-After on a 503")
    long_message_ttl_seconds: int = Field(
        default=3600,
        ge=60,
        description="How long the parts of a long SMS posted part by part wait for the rest",
    )
    receive_gateway: str | None = Field(
        default=None,
        description="The mobilefirst-http gateway whose MO /receiveSMS takes; None: /receiveSMS "
        "answers 404",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Proxy networks whose X-Forwarded-For names the client (gateway allow-lists)",
    )
    subscribe_mode: SubscribeMode = Field(
        default="off",
        description="/subscribeSMS: off (refused), gateway (callers pass subscribe_gateway's "
        "inbound checks) or public (each change confirmed by a code texted to the number)",
    )
    subscribe_gateway: str | None = Field(
        default=None, description="subscribe_mode gateway: the gateway whose checks apply"
    )
    subscribe_code_ttl_seconds: int = Field(
        default=900, ge=60, le=86400, description="subscribe_mode public: how long a code works"
    )
    subscribe_code_attempts: int = Field(
        default=5, ge=1, le=20, description="subscribe_mode public: tries at each code"
    )
    subscribe_code_interval_seconds: int = Field(
        default=60,
        ge=1,
        le=86400,
        description="subscribe_mode public: the least time between two codes to one number",
    )

    @model_validator(mode="after")
    def _check_subscribe_gateway(self) -> Self:
        if self.subscribe_mode == "gateway" and self.subscribe_gateway is None:
            raise ValueError("subscribe_mode gateway needs subscribe_gateway")
        return self

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
