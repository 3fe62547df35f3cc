"""What every gateway dialect speaks in: plain values, no I/O.

Outbound, a dialect turns an `OutboundSMS` into `GatewayRequest`s and classifies each
`GatewayResponse` (`twoway.gateways.results`). Inbound, ingress hands it a `WebhookRequest` (the
gateway's HTTP call, already read) and gets back `InboundSMS`es or `DeliveryEvent`s, and the
`WebhookAnswer` the gateway expects. A post that cannot be understood raises `InvalidWebhook`.

Our own message id travels through every gateway that reports deliveries (in the status callback
URL, a client reference or callback data) as a *reference*: the message id, the adapter that sent
it (so that a delivery report reaches that adapter's events) and a signature binding both to the
gateway, keyed with the deployment's reference secret. A report whose reference we did not sign
for that gateway is refused (`ForgedReference`): nobody else can report on our messages, or on
messages we never sent. A report's `detail` is cut to `MAX_DETAIL` characters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args
from urllib.parse import urlencode

from twoway.gateways.config import GatewayConfig, GatewaySecrets
from twoway.gateways.encoding import segment
from twoway.messages import (
    MAX_KEYWORD_LENGTH,
    DeliveryEvent,
    DeliveryStatus,
    InboundSMS,
    OutboundSMS,
)
from twoway.phone import (
    InvalidPhoneNumber,
    format_for_gateway,
    mask_phone,
    parse_gateway_number,
)

Pairs = tuple[tuple[str, str], ...]

JSON_TYPES = frozenset({"application/json", "text/json"})

DELIVERY_STATUSES: dict[str, DeliveryStatus] = {
    status: status for status in get_args(DeliveryStatus) if status != "unknown"
}
"""The statuses a gateway may report in our own words; `unknown` is outbound's judgement of its
own attempt, never a gateway's."""


class InvalidWebhook(ValueError):
    """A gateway's post we cannot understand (ingress answers `status`, 400 or 422 by default,
    with `code` and the `field` at fault when there is one)."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid_field",
        status: int = 422,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.field = field


class ForgedReference(InvalidWebhook):
    """A delivery report whose reference we did not sign for this gateway (ingress answers 403:
    like a failed webhook signature, the post is not from the gateway we sent through)."""

    def __init__(self) -> None:
        super().__init__(
            "the reference is not one we gave this gateway", code="bad_reference", status=403
        )


@dataclass(frozen=True)
class GatewayRequest:
    """One HTTP request to a gateway. `params` go in the query string (bytes as they are)."""

    method: str
    url: str
    params: Mapping[str, str | bytes] = field(default_factory=dict)
    form: Mapping[str, str] | None = None
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    basic_auth: tuple[str, str] | None = None

    def full_url(self) -> str:
        """`url` with `params` appended, percent-encoded (UTF-8 for text, bytes verbatim)."""
        if not self.params:
            return self.url
        return self.url + ("&" if "?" in self.url else "?") + urlencode(self.params)


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON; None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass(frozen=True)
class WebhookRequest:
    """A gateway's call to ingress, read and decoded: query and form pairs keep every value."""

    method: str
    url: str
    """The URL as the gateway called it (scheme and host as a proxy forwarded them)."""
    headers: Mapping[str, str]
    """Lower-cased names."""
    query: Pairs = ()
    form: Pairs = ()
    body: bytes = b""
    content_type: str = ""
    charset: str = "utf-8"
    remote: str = ""

    def fields(self) -> dict[str, str]:
        """First value of every query and form parameter; the form's win."""
        values: dict[str, str] = {}
        for key, value in (*self.form, *self.query):
            values.setdefault(key, value)
        return values

    def text(self) -> str:
        try:
            return self.body.decode(self.charset or "utf-8")
        except (LookupError, UnicodeDecodeError) as error:
            raise InvalidWebhook(f"the body is not {self.charset} text", code="bad_body") from error

    def json_object(self) -> dict[str, Any]:
        try:
            document = json.loads(self.body)
        except RecursionError as error:
            raise InvalidWebhook(
                "the JSON body is nested too deeply", code="invalid_json", status=400
            ) from error
        except ValueError as error:
            raise InvalidWebhook(
                f"the body is not valid JSON: {error}", code="invalid_json", status=400
            ) from error
        if not isinstance(document, dict):
            raise InvalidWebhook("the JSON body must be an object", code="invalid_json", status=400)
        return document


@dataclass(frozen=True)
class WebhookAnswer:
    status: int = 200
    body: str = ""
    content_type: str = "text/plain"


EMPTY_ANSWER = WebhookAnswer()


def no_signature(gateway: GatewayConfig, request: WebhookRequest, secrets: GatewaySecrets) -> bool:
    """`check_signature` of a gateway that does not sign its webhooks (use a token or
    `allow_from`)."""
    return False


def empty_answer(kind: str) -> WebhookAnswer:
    """`answer` of a gateway that wants an empty 200 to every webhook."""
    return EMPTY_ANSWER


REFERENCE_SIGNATURE_BYTES = 16
"""128 bits of HMAC-SHA256, 22 base64url characters: a reference (a 26-character ULID, the
adapter, the signature) fits Vonage's 100-character `client-ref` for adapter names up to 50."""

MAX_DETAIL = 200
"""Characters of a delivery report's `detail` kept (the rest of a gateway's text is dropped)."""


def _reference_signature(
    gateway: GatewayConfig, secrets: GatewaySecrets, message_id: str, adapter: str
) -> str:
    payload = json.dumps(["twoway-reference", gateway.id, message_id, adapter]).encode()
    digest = hmac.new(secrets.reference_secret.encode(), payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:REFERENCE_SIGNATURE_BYTES]).rstrip(b"=").decode()


def encode_reference(gateway: GatewayConfig, secrets: GatewaySecrets, message: OutboundSMS) -> str:
    """Our reference for a message sent through `gateway`, carried into its delivery reports:
    `<message id>:<adapter>:<signature>` (adapter names and base64url never contain ':')."""
    adapter = message.adapter or ""
    signature = _reference_signature(gateway, secrets, message.message_id, adapter)
    return f"{message.message_id}:{adapter}:{signature}"


def decode_reference(
    gateway: GatewayConfig, secrets: GatewaySecrets, reference: str
) -> tuple[str, str | None]:
    """(message id, adapter) of a reference `encode_reference` made for this gateway;
    `ForgedReference` for any other: unsigned (a bare message id, even from a gateway that
    echoes our id as its own), altered, truncated, or signed for another gateway."""
    signed, _, signature = reference.rpartition(":")
    message_id, _, adapter = signed.rpartition(":")
    expected = _reference_signature(gateway, secrets, message_id, adapter)
    if not message_id or not same(expected, signature):
        raise ForgedReference
    return message_id, adapter or None


def callback_url(gateway: GatewayConfig, secrets: GatewaySecrets) -> str | None:
    """This gateway's delivery-report endpoint on our ingress (with the gateway's inbound token
    when it has one); None without `public_url`."""
    if gateway.public_url is None:
        return None
    url = f"{str(gateway.public_url).rstrip('/')}/gateways/{gateway.id}/status"
    if secrets.inbound_token is None:
        return url
    return f"{url}?{urlencode({gateway.inbound.token_param: secrets.inbound_token})}"


def status_url(
    gateway: GatewayConfig, secrets: GatewaySecrets, message: OutboundSMS, extra: str = ""
) -> str | None:
    """`callback_url` for one message: our reference in its query, then `extra`."""
    base = callback_url(gateway, secrets)
    if base is None:
        return None
    reference = urlencode({"ref": encode_reference(gateway, secrets, message)})
    return f"{base}{'&' if '?' in base else '?'}{reference}{extra}"


def addresses(gateway: GatewayConfig, message: OutboundSMS) -> tuple[str, str | None]:
    """(to, from) of `message` written as the gateway writes numbers; from is the message's
    sender or the gateway's default sender (None: the gateway's own default)."""
    region = gateway.region or ""
    sender = message.from_ or gateway.default_sender
    return (
        format_for_gateway(message.to, gateway.numbers, region),
        format_for_gateway(sender, gateway.numbers, region) if sender else None,
    )


def require(values: Mapping[str, Any], name: str) -> str:
    """A required, non-empty field as a string; `InvalidWebhook` naming it otherwise."""
    value = values.get(name)
    if value is None or value == "":
        raise InvalidWebhook(f"{name} is required", code="missing_field", field=name)
    return str(value)


def string_params(values: Mapping[str, Any], skip: Sequence[str] = ()) -> dict[str, str]:
    """Every scalar field as a string (for `InboundSMS.params`), nested values as JSON."""
    params: dict[str, str] = {}
    for key, value in values.items():
        if key in skip or value is None:
            continue
        if isinstance(value, bool):
            params[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            params[key] = str(value)
        else:
            params[key] = json.dumps(value, separators=(",", ":"))
    return params


MAX_TEXT_CHARACTERS_PER_SEGMENT = 160
ONE_SEGMENT_ANY_ENCODING = 70
MAX_GATEWAY_MESSAGE_ID_LENGTH = 128
MAX_PARAMS = 50
MAX_PARAM_NAME_LENGTH = 64
MAX_PARAM_VALUE_LENGTH = 1024

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""C0 and C1 control characters but tab and newline: stripped from everything an MO carries (a
carriage return too, so that CRLF line ends become newlines). None reaches a handler, a log line,
an AMQP header or a database key."""


def clean(value: str, name: str) -> str:
    """`value` without control characters; `InvalidWebhook` naming `name` when it is not Unicode
    text (a lone surrogate from a JSON `\\ud800` cannot be encoded, stored or sent)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidWebhook(
            f"{name} is not valid Unicode text ({error.reason})", code="invalid_text", field=name
        ) from error
    return _CONTROL_CHARACTERS.sub("", value)


def _bounded(value: str, name: str, most: int) -> str:
    if len(value) > most:
        raise InvalidWebhook(
            f"{name} is longer than {most} characters", code="too_long", field=name
        )
    return value


def _clean_text(gateway: GatewayConfig, text: str, name: str) -> str:
    """The MO text, cleaned, and no longer than the gateway's `max_segments`."""
    # The length first: a hostile 64 KB text is refused before any work is spent on it.
    _bounded(text, name, gateway.max_segments * MAX_TEXT_CHARACTERS_PER_SEGMENT)
    cleaned = clean(text, name)
    # Up to 70 characters is one segment in any encoding: most MO skip the count.
    if len(cleaned) > ONE_SEGMENT_ANY_ENCODING and segment(cleaned).count > gateway.max_segments:
        raise InvalidWebhook(
            f"{name} is longer than {gateway.max_segments} SMS segments",
            code="too_long",
            field=name,
        )
    return cleaned


def _clean_params(params: Mapping[str, str]) -> dict[str, str]:
    if len(params) > MAX_PARAMS:
        raise InvalidWebhook(f"more than {MAX_PARAMS} parameters", code="too_many_parameters")
    cleaned: dict[str, str] = {}
    for name, value in params.items():
        key = clean(_bounded(name, "parameter name", MAX_PARAM_NAME_LENGTH), "parameter name")
        if key:
            cleaned[key] = clean(_bounded(value, key, MAX_PARAM_VALUE_LENGTH), key)
    return cleaned


@dataclass(frozen=True)
class FieldNames:
    """What a gateway calls the sender, recipient and text of an MO (named in our 4xx answers)."""

    sender: str = "from"
    recipient: str = "to"
    text: str = "text"


def inbound_message(
    gateway: GatewayConfig,
    region: str,
    *,
    sender: str,
    text: str,
    recipient: str = "",
    gateway_message_id: object = None,
    keyword: str = "",
    params: Mapping[str, str] | None = None,
    names: FieldNames = FieldNames(),
) -> InboundSMS:
    """The `InboundSMS` a dialect parsed, checked and bounded at the edge: the sender in E.164
    (read as the gateway writes numbers), the recipient one of the gateway's own numbers, no
    control characters, every field within its limit (`InvalidWebhook` naming the field)."""
    try:
        normalised = parse_gateway_number(sender, gateway.numbers, gateway.region or region)
    except InvalidPhoneNumber as error:
        raise InvalidWebhook(f"{names.sender}: {error}", field=names.sender) from error
    to = clean(recipient, names.recipient).strip()
    owned = gateway.owned(to, region) if to else ""
    if owned is None:
        raise InvalidWebhook(
            f"recipient {mask_phone(to)!r} is not one of gateway {gateway.id!r}'s own numbers",
            code="unknown_recipient",
            field=names.recipient,
        )
    message_id = None if gateway_message_id in (None, "") else str(gateway_message_id)
    return InboundSMS(
        gateway_id=gateway.id,
        gateway_message_id=message_id
        and clean(_bounded(message_id, "message id", MAX_GATEWAY_MESSAGE_ID_LENGTH), "message id"),
        sender=normalised,
        recipient=owned,
        text=_clean_text(gateway, text, names.text),
        keyword=clean(_bounded(keyword.strip(), "keyword", MAX_KEYWORD_LENGTH), "keyword"),
        params=_clean_params(params or {}),
    )


def delivery_event(
    gateway: GatewayConfig,
    secrets: GatewaySecrets,
    reference: str,
    status: DeliveryStatus,
    *,
    gateway_message_id: str | None = None,
    detail: str = "",
) -> DeliveryEvent:
    """The `DeliveryEvent` a dialect parsed; `ForgedReference` unless we signed `reference` for
    this gateway."""
    message_id, adapter = decode_reference(gateway, secrets, reference)
    return DeliveryEvent(
        correlation_id=message_id,
        outbound_id=message_id,
        status=status,
        gateway_id=gateway.id,
        gateway_message_id=gateway_message_id or None,
        adapter=adapter,
        detail=detail[:MAX_DETAIL],
    )


def hmac_hex(secret: str, payload: bytes, algorithm: str = "sha256") -> str:
    return hmac.new(secret.encode(), payload, getattr(hashlib, algorithm)).hexdigest()


def same(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a signature or token; a missing one never matches."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
