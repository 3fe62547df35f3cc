from __future__ import annotations

from pydantic import Field

from twoway.settings import TwowaySettings


class GatewaySimSettings(TwowaySettings):
    """Settings of the gateway simulator (`TWOWAY_` environment variables)."""

    port: int = Field(default=8090, ge=0, le=65535)
    ingress_url: str = Field(default="http://127.0.0.1:8080", description="Where MO is posted")
    max_recorded: int = Field(default=100_000, ge=1, description="MT messages kept in memory")
    dlr_param: str = Field(
        default="dlr_url", description="MT parameter carrying the URL to report delivery to"
    )
