"""Settings shared by every service, from `TWOWAY_`-prefixed environment variables.

Each service subclasses `TwowaySettings` with its own fields; settings objects are built once in a
service's `main()` and passed in, never read from globals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from twoway.topology import DELIVERY_LIMIT
from twoway.tracing import Exporter


class TwowaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TWOWAY_", extra="ignore", frozen=True)

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    mongo_url: str = "mongodb://127.0.0.1:27017/?directConnection=true"
    mongo_database: str = "twoway"
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    prefetch: int = Field(default=64, ge=1, description="Unacked messages a consumer may hold")
    publish_timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for a confirm")
    reconnect_interval: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between attempts to reach the broker, at start and after it was lost",
    )
    reconnect_jitter: float = Field(
        default=0.5,
        ge=0,
        lt=1,
        description="How far each wait between attempts strays from reconnect_interval, as a "
        "fraction of it (0.5: 0.5-1.5 s), so that replicas do not reconnect in lockstep",
    )
    default_region: str = Field(
        default="US",
        min_length=2,
        max_length=2,
        description="ISO region for phone numbers written without a country code",
    )
    host: str = "127.0.0.1"
    otel_exporter: Exporter = Field(
        default="none",
        description="OpenTelemetry span exporter: none, console, or otlp (to the collector at "
        "OTEL_EXPORTER_OTLP_ENDPOINT); console and otlp need the `otel` extra",
    )
    gateways_file: Path = Field(
        default=Path("config/gateways.yaml"), description="The gateways YAML (twoway.gateways)"
    )


class WorkerSettings(TwowaySettings):
    """A queue consumer: it serves only /healthz, /readyz and /metrics on `port`."""

    port: int = Field(default=0, ge=0, le=65535)
    shutdown_grace: float = Field(
        default=10.0, gt=0, description="Seconds to finish in-flight work"
    )
    max_deliveries: int = Field(
        default=5,
        ge=1,
        le=DELIVERY_LIMIT,
        description="Deliveries of a message whose handling keeps failing, or keeps killing the "
        "process, before it is dead-lettered with the reason (at most the queues' own limit)",
    )


class ReferenceSettings(TwowaySettings):
    """A service that signs (outbound) or checks (ingress) the reference a gateway carries into
    its delivery reports (`twoway.gateways.base.encode_reference`)."""

    reference_secret: SecretStr = Field(
        min_length=16,
        description="TWOWAY_REFERENCE_SECRET: the deployment's key for delivery-report "
        "references, the same in ingress and outbound (required: neither starts without it; "
        "changing it makes ingress refuse reports for messages sent before)",
    )
