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
    number_format: auto          # how it writes numbers: e164, international, national, auto
    region: GB                   # its country for national numbers (TWOWAY_DEFAULT_REGION)
    own_numbers: ["12345", "+447700900000", "MyBank"]   # MO go to these; replies come from them
    inbound:                     # who may post to /gateways/<id>/inbound and /status
      signature: true            # the dialect's own signature (twilio, vonage, webhook)
      token: SIM_INBOUND_TOKEN   # environment variable of a shared token (query `token` or header)
      basic_auth: {username: twoway, password: SIM_INBOUND_PASSWORD}   # HTTP basic auth
      allow_from: [10.0.0.0/8]   # source addresses
      # open: true               # none of the above: anyone may post (development only; warned)
    destinations:                # who may be texted (twoway.gateways.destinations)
      countries: [US, CA, "+44"] # ISO regions or calling codes; empty or absent: any country
      number_types: [mobile, fixed_line, fixed_line_or_mobile]  # absent: all but premium_rate,
                                 # shared_cost, personal_number and unknown (fictitious numbers)
    recipient_limit: {count: 10, seconds: 60}  # replies to one number (the default); null: none
    inbound_limits:              # MO per sender / per gateway, else 429 (twoway.gateways.limits)
      per_sender: {count: 10, seconds: 60}
    in_doubt: hold               # or resend: a send outbound cannot tell went out (see below)
    in_doubt_timeout: 3600       # hold: seconds to wait for a delivery report, then `failed`


Every configured inbound check must pass; a gateway with none refuses to start unless it says
`open: true`. `own_numbers` (with `default_sender`, which is always one) lists the short codes,
numbers and sender ids the gateway delivers MO to: an MO to any other `to` is refused, so that a
reply always comes from a number we own. `number_format` defaults to what the vendor documents
(`international` for vonage and infobip, `e164` for twilio) and to `auto` for the others.

An attempt is *in doubt* when outbound stopped (killed, lost its broker connection) after it
sent the gateway's request and before it logged the answer: the redelivered message may or may
not have reached the gateway. `in_doubt: hold` (the default) sends it no more: it gets an
`unknown` event, and a delivery report for it settles it (delivered, failed, expired); none
within `in_doubt_timeout` seconds of the attempt -> `failed` and the dead-letter queue (replaying
it from there sends it again: an operator's choice). Hold suits a gateway that sends delivery
reports (`public_url`); without them every in-doubt message ends failed after the timeout.
`in_doubt: resend_unreported` holds it the same way, but with no report within `in_doubt_timeout`
it sends it again: the gateway reports every message it takes within that time, so its silence
shows the request never reached it (outbound was killed after noting the attempt and before the
request left). It needs `public_url`; a report later than the timeout means a second copy.
`in_doubt: resend` sends it again at once: for a gateway that drops a copy of a message it has
already taken. Infobip does, for the `messageId` we give it (our message id), but only once
Infobip has enabled idempotency for the account's channels and within the grace period set
there: turn it on, then set `in_doubt: resend`. Kannel, Twilio's Messages API, Vonage's SMS API
(`client-ref` is a label it echoes, not a deduplication key) and the MobileFirst HTTP shape
document no such key; a webhook bridge gets our message id in the body and may deduplicate on it.

Vendor credentials: `account` (Twilio Account SID, Vonage API key, Kannel username) and
`secret` (the environment variable with the Twilio auth token, Vonage API secret, Kannel
password, Infobip API key, or the webhook's bearer token).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from twoway.gateways.destinations import DestinationPolicy, RecipientLimit
from twoway.gateways.limits import InboundLimits
from twoway.phone import InvalidPhoneNumber, NumberFormat, parse_gateway_number

InDoubtPolicy = Literal["hold", "resend", "resend_unreported"]

GatewayType = Literal["mobilefirst-http", "kannel", "twilio", "vonage", "infobip", "webhook"]

_NEEDS: dict[str, tuple[str, ...]] = {
    "kannel": ("account", "secret"),
    "twilio": ("account", "secret"),
    "vonage": ("account", "secret"),
    "infobip": ("secret",),
}
"""Fields a gateway type cannot work without."""

_NUMBER_FORMATS: dict[str, NumberFormat] = {
    "vonage": "international",
    "infobip": "international",
    "twilio": "e164",
}
"""How each vendor documents its numbers; `auto` for the others (an operator's HTTP API, a Kannel
SMSC: they differ from one installation to the next)."""


class BasicAuth(BaseModel):
    """HTTP basic auth the gateway sends with every post (Kannel's `post-url` with user:pass@)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str = Field(min_length=1)
    password: str = Field(min_length=1, description="Environment variable holding the password")


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
    basic_auth: BasicAuth | None = None
    allow_from: list[IPv4Network | IPv6Network] = Field(
        default_factory=list, description="Source networks; empty: any"
    )
    open: bool = Field(
        default=False, description="No check at all, on purpose: anyone may post (development)"
    )


GATEWAY_ID_PATTERN = r"^[A-Za-z0-9_-]+$"


class GatewayConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, pattern=GATEWAY_ID_PATTERN)
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
    number_format: NumberFormat | None = Field(
        default=None, description="How the gateway writes numbers; None: the vendor's way"
    )
    region: str | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="The gateway's country for national numbers; None: TWOWAY_DEFAULT_REGION",
    )
    own_numbers: list[str] = Field(
        default_factory=list,
        description="Short codes, numbers and sender ids MO may be sent to (and replies come from)",
    )
    destinations: DestinationPolicy = Field(default_factory=DestinationPolicy)
    recipient_limit: RecipientLimit | None = Field(default_factory=RecipientLimit)
    inbound_limits: InboundLimits = Field(default_factory=InboundLimits)
    in_doubt: InDoubtPolicy = Field(
        default="hold",
        description="A send outbound cannot tell went out: hold (unknown until a delivery "
        "report or in_doubt_timeout), resend (the gateway drops a second copy) or "
        "resend_unreported (hold; no report within in_doubt_timeout: send again)",
    )
    in_doubt_timeout: float = Field(
        default=3600.0,
        gt=0,
        description="hold, resend_unreported: seconds after the attempt to wait for a delivery "
        "report, then failed (hold) or sent again (resend_unreported)",
    )

    @model_validator(mode="after")
    def _check_type_needs(self) -> GatewayConfig:
        missing = [name for name in _NEEDS.get(self.type, ()) if not getattr(self, name)]
        if missing:
            raise ValueError(f"a {self.type} gateway needs {missing}")
        if self.multipart == "udh" and self.type != "kannel":
            raise ValueError("multipart: udh is for kannel gateways")
        if self.numbers == "national" and self.region is None:
            raise ValueError("number_format: national needs the gateway's region")
        if self.in_doubt == "resend_unreported" and self.public_url is None:
            raise ValueError("in_doubt: resend_unreported needs delivery reports (public_url)")
        return self

    @property
    def numbers(self) -> NumberFormat:
        """How this gateway writes phone numbers, in and out."""
        return self.number_format or _NUMBER_FORMATS.get(self.type, "auto")

    def owned(self, recipient: str, default_region: str) -> str | None:
        """Which of our numbers an MO's `to` names, spelled as configured (so a reply comes from
        exactly that); None when it is none of them. Phone numbers match whatever their
        spelling (`447700900000` is `+447700900000`), short codes and sender ids exactly."""
        owned = (*self.own_numbers, *((self.default_sender,) if self.default_sender else ()))
        if recipient in owned:
            return recipient
        region = self.region or default_region
        wanted = _as_number(recipient, self.numbers, region)
        return None if wanted is None else _numbers_of(owned, region).get(wanted)

    def secrets(self, environ: Mapping[str, str], *, reference_secret: str) -> GatewaySecrets:
        """Every secret this gateway names, and the deployment's `reference_secret`; `KeyError`
        naming each variable that is not set."""
        names = [
            *self.secret_parameters.values(),
            *(name for name in (self.secret, self.signature_secret, self.inbound.token) if name),
            *([self.inbound.basic_auth.password] if self.inbound.basic_auth else []),
        ]
        missing = [name for name in names if name not in environ]
        if missing:
            raise KeyError(f"gateway {self.id!r} needs environment variables {missing}")
        secret = environ[self.secret] if self.secret else None
        return GatewaySecrets(
            parameters={param: environ[name] for param, name in self.secret_parameters.items()},
            reference_secret=reference_secret,
            secret=secret,
            signature_secret=environ[self.signature_secret] if self.signature_secret else secret,
            inbound_token=environ[self.inbound.token] if self.inbound.token else None,
            inbound_password=(
                environ[self.inbound.basic_auth.password] if self.inbound.basic_auth else None
            ),
        )


@functools.cache
def _numbers_of(owned: tuple[str, ...], region: str) -> dict[str, str]:
    """The phone numbers among a gateway's own numbers: E.164 -> as configured (read once)."""
    numbers = ((_as_number(own, "auto", region), own) for own in owned)
    return {number: own for number, own in numbers if number is not None}


def _as_number(value: str, number_format: NumberFormat, region: str) -> str | None:
    """`value` in E.164 when it is a phone number longer than a short code, else None."""
    digits = sum(character.isdigit() for character in value)
    if digits < 7 or any(character.isalpha() for character in value):
        return None
    try:
        return parse_gateway_number(value, number_format, region)
    except InvalidPhoneNumber:
        return None


@dataclass(frozen=True)
class GatewaySecrets:
    """A gateway's secrets, read from the environment once at start (the reference secret from
    the service's settings)."""

    parameters: Mapping[str, str]
    reference_secret: str = field(repr=False)
    """Signs our references in this gateway's delivery reports (`TWOWAY_REFERENCE_SECRET`)."""
    secret: str | None = None
    signature_secret: str | None = None
    inbound_token: str | None = None
    inbound_password: str | None = None

    def __post_init__(self) -> None:
        if not self.reference_secret:  # an empty key signs references anyone can make
            raise ValueError("a gateway's reference_secret must not be empty")


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

    def secrets(
        self, environ: Mapping[str, str], *, reference_secret: str
    ) -> dict[str, GatewaySecrets]:
        """Every gateway's secrets by id; `KeyError` at start when one is missing."""
        return {
            gateway.id: gateway.secrets(environ, reference_secret=reference_secret)
            for gateway in self.gateways
        }


def load_gateways(path: Path) -> GatewaysConfig:
    with path.open(encoding="utf-8") as file:
        return GatewaysConfig.model_validate(yaml.safe_load(file))
