"""Building blocks for the dialect tables: gateways, messages and webhook posts."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.support.references import REFERENCE_SECRET
from twoway.gateways.base import WebhookRequest, encode_reference
from twoway.gateways.config import GatewayConfig, GatewaySecrets
from twoway.messages import OutboundSMS

MESSAGE_ID = "01JDQ6R5Z8X0M4N3K2P1Q0R9S8"
PUBLIC = "https://sms.example.com"
REGION = "US"
OWN_NUMBERS = ["12345", "+15017122661", "+447700900000", "+385921004026"]
"""The short code and numbers the dialects' documented payloads send MO to."""


def gateway(type_: str, **fields: Any) -> GatewayConfig:
    values: dict[str, Any] = {
        "id": type_,
        "type": type_,
        "url": "https://gw.example.com",
        "own_numbers": OWN_NUMBERS,
    }
    return GatewayConfig.model_validate({**values, **fields})


def outbound(**fields: Any) -> OutboundSMS:
    values: dict[str, Any] = {
        "message_id": MESSAGE_ID,
        "to": "+14155552671",
        "text": "Your balance is 12.00",
        "adapter": "bank",
    }
    return OutboundSMS.model_validate({**values, **fields})


def secrets(secret: str | None = "s3cret", **fields: Any) -> GatewaySecrets:
    return GatewaySecrets(
        parameters=fields.pop("parameters", {}),
        reference_secret=fields.pop("reference_secret", REFERENCE_SECRET),
        secret=secret,
        signature_secret=fields.pop("signature_secret", secret),
        **fields,
    )


def reference(config: GatewayConfig) -> str:
    """What outbound gives `config`'s gateway for `outbound()` (message MESSAGE_ID of `bank`)."""
    return encode_reference(config, secrets(), outbound())


def ref_query(config: GatewayConfig) -> str:
    """`ref=<reference>` as our status URLs carry it."""
    return urlencode({"ref": reference(config)})


def form_post(
    url: str, fields: dict[str, str], headers: dict[str, str] | None = None
) -> WebhookRequest:
    body = urlencode(fields).encode()
    return WebhookRequest(
        method="POST",
        url=url,
        headers={key.lower(): value for key, value in (headers or {}).items()},
        query=tuple(parse_qsl(urlsplit(url).query, keep_blank_values=True)),
        form=tuple(fields.items()),
        body=body,
        content_type="application/x-www-form-urlencoded",
    )


def json_post(url: str, document: Any, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        url=url,
        headers={key.lower(): value for key, value in (headers or {}).items()},
        query=tuple(parse_qsl(urlsplit(url).query, keep_blank_values=True)),
        body=json.dumps(document).encode(),
        content_type="application/json",
    )


def get(url: str, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(
        method="GET",
        url=url,
        headers={key.lower(): value for key, value in (headers or {}).items()},
        query=tuple(parse_qsl(urlsplit(url).query, keep_blank_values=True)),
    )
