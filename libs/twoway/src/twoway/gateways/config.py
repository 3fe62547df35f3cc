"""Gateway configuration: one YAML file lists every gateway; secrets come from the environment.

default_gateway: sim
gateways:
  - id: sim
    type: mobilefirst-http       # or kannel, twilio, vonage, infobip, webhook
    url: http://127.0.0.1:8090/sendSMS
    to_param: to                 # SMSConfig.xml toParamName      (mobilefirst-http)
    from_param: from             # SMSConfig.xml fromParamName    (mobilefirst-http)
    text_param: text             # SMSConfig.xml textParamName    (mobilefirst-http)
    default_sender: "12345"
    parameters: {user: twoway}                   # fixed extra parameters
    secret_parameters: {password: SIM_PASSWORD}  # parameter -> environment variable
    timeout: 5
    rate_limit: 30               # segments per second, shared by every outbound replica
    max_segments: 6              # longer texts fail for good
    transliterate: true          # smart quotes and dashes to GSM when that keeps a text GSM-7
    public_url: https://sms.example.com   # our ingress as the gateway reaches it (delivery reports)
    inbound:                     # who may post to /gateways/<id>/inbound and /status
      signature: true            # the dialect's own signature (twilio, vonage, webhook)
      token: SIM_INBOUND_TOKEN   # environment variable of a shared token (query `token` or header)
      allow_from: [10.0.0.0/8]   # source addresses
    inbound_limits:              # MO per sender / per gateway, else 429 (twoway.gateways.limits)
      per_sender: {count: 10, seconds: 60}

Vendor credentials: `account` (Twilio Account SID, Vonage API key, Kannel username) and
`secret` (the environment variable with the Twilio auth token, Vonage API secret, Kannel
password, Infobip API key, or the webhook's bearer token).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from twoway.gateways.limits import InboundLimits

GatewayType = Literal["mobilefirst-http", "kannel", "twilio", "vonage", "infobip", "webhook"]

_NEEDS: dict[str, tuple[str, ...]] = {
    "kannel": ("account", "secret"),
    "twilio": ("account", "secret"),
    "vonage": ("account", "secret"),
    "infobip": ("secret",),
}
"""Fields a gateway type cannot work without."""


class InboundAuth(BaseModel):
    """How ingress knows a post comes from this gateway: every configured check must pass."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    signature: bool | None = Field(
        default=None, description="Check the dialect's signature; None: on for twilio"
    )
    token: str | None = Field(
        default=None, description="Environment variable holding a shared token"
    )
    token_param: str = Field(default="token", description="Query parameter carrying the token")
    token_header: str = Field(default="X-Twoway-Token", description="...or this header")
    allow_from: list[IPv4Network | IPv6Network] = Field(
        default_factory=list, description="Source networks; empty: any"
    )


class GatewayConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    type: GatewayType
    url: HttpUrl
    method: Literal["GET", "POST"] = "GET"
    to_param: str = "to"
    from_param: str = "from"
    text_param: str = "text"
    status_param: str | None = Field(
        default=None, description="mobilefirst-http: parameter carrying our delivery-report URL"
    )
    default_sender: str | None = None
    parameters: dict[str, str] = Field(default_factory=dict)
    secret_parameters: dict[str, str] = Field(
        default_factory=dict, description="Parameter name -> environment variable holding it"
    )
    account: str | None = Field(default=None, description="Account SID, API key or username")
    secret: str | None = Field(default=None, description="Environment variable: token/password")
    signature_secret: str | None = Field(
        default=None, description="Environment variable: inbound signature key, if not `secret`"
    )
    signature_method: Literal["md5hash", "md5", "sha1", "sha256", "sha512"] = Field(
        default="md5hash", description="vonage: the account's signature method"
    )
    dlr_mask: int = Field(default=27, ge=0, le=31, description="kannel: 1+2+8+16 by default")
    multipart: Literal["gateway", "udh"] = Field(
        default="gateway",
        description="gateway: it splits long texts; udh (kannel): one request per part with UDH",
    )
    public_url: HttpUrl | None = None
    timeout: float = Field(default=10.0, gt=0)
    rate_limit: float | None = Field(default=None, gt=0, description="Segments per second")
    max_segments: int = Field(default=10, ge=1, le=255)
    transliterate: bool = False
    inbound: InboundAuth = Field(default_factory=InboundAuth)
    inbound_limits: InboundLimits = Field(default_factory=InboundLimits)

    @model_validator(mode="after")
    def _check_type_needs(self) -> GatewayConfig:
        missing = [name for name in _NEEDS.get(self.type, ()) if not getattr(self, name)]
        if missing:
            raise ValueError(f"a {self.type} gateway needs {missing}")
        if self.multipart == "udh" and self.type != "kannel":
            raise ValueError("multipart: udh is for kannel gateways")
        return self

    def secrets(self, environ: Mapping[str, str]) -> GatewaySecrets:
        """Every secret this gateway names; `KeyError` naming each variable that is not set."""
        names = [
            *self.secret_parameters.values(),
            *(name for name in (self.secret, self.signature_secret, self.inbound.token) if name),
        ]
        missing = [name for name in names if name not in environ]
        if missing:
            raise KeyError(f"gateway {self.id!r} needs environment variables {missing}")
        secret = environ[self.secret] if self.secret else None
        return GatewaySecrets(
            parameters={param: environ[name] for param, name in self.secret_parameters.items()},
            secret=secret,
            signature_secret=environ[self.signature_secret] if self.signature_secret else secret,
            inbound_token=environ[self.inbound.token] if self.inbound.token else None,
        )


@dataclass(frozen=True)
class GatewaySecrets:
    """A gateway's secrets, read from the environment once at start."""

    parameters: Mapping[str, str]
    secret: str | None = None
    signature_secret: str | None = None
    inbound_token: str | None = None


class GatewaysConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    default_gateway: str
    gateways: list[GatewayConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_ids(self) -> GatewaysConfig:
        ids = [gateway.id for gateway in self.gateways]
        if len(set(ids)) != len(ids):
            raise ValueError(f"gateway ids must be unique: {ids}")
        if self.default_gateway not in ids:
            raise ValueError(f"default_gateway {self.default_gateway!r} is not one of {ids}")
        return self

    def get(self, gateway_id: str | None) -> GatewayConfig | None:
        """The gateway called `gateway_id`; the default one for None; None when unknown."""
        wanted = gateway_id or self.default_gateway
        return next((gateway for gateway in self.gateways if gateway.id == wanted), None)

    def secrets(self, environ: Mapping[str, str]) -> dict[str, GatewaySecrets]:
        """Every gateway's secrets by id; `KeyError` at start when one is missing."""
        return {gateway.id: gateway.secrets(environ) for gateway in self.gateways}


def load_gateways(path: Path) -> GatewaysConfig:
    with path.open(encoding="utf-8") as file:
        return GatewaysConfig.model_validate(yaml.safe_load(file))
