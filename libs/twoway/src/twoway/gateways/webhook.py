"""A generic JSON webhook gateway: for in-house gateways and bridges written for Twoway.

Out: `POST <url>` with a JSON object `{message_id, to, from, text, encoding, segments,
status_url}` and, with a `secret`, `Authorization: Bearer <secret>`. Any 2xx is success; an
`id` in a JSON answer is the gateway's id.

In: MO as a JSON object `{from, to, text, id?, keyword?, ...}` (other fields kept as params);
delivery reports as `{ref, status, id?, detail?}` (`status` one of ours, `ref` the `status_url`'s
reference), the same as `mobilefirst-http`'s. Signed with `X-Twoway-Signature: sha256=<hex>`, the
HMAC-SHA256 of the raw body keyed with the signature secret.
"""

from __future__ import annotations

from typing import Any

from twoway.gateways.base import (
    GatewayRequest,
    GatewayResponse,
    WebhookRequest,
    addresses,
    empty_answer,
    hmac_hex,
    inbound_message,
    require,
    same,
    status_url,
    string_params,
)
from twoway.gateways.config import GatewayConfig, GatewaySecrets
from twoway.gateways.encoding import SegmentedText
from twoway.gateways.mobilefirst import parse_status
from twoway.gateways.results import SendResult, classify_status
from twoway.messages import InboundSMS, OutboundSMS

__all__ = [
    "SIGNATURE_HEADER",
    "SIGNS",
    "answer",
    "build_requests",
    "check_signature",
    "classify",
    "parse_inbound",
    "parse_status",
]

SIGNS = True
SIGNATURE_HEADER = "X-Twoway-Signature"


def build_requests(
    gateway: GatewayConfig, message: OutboundSMS, text: SegmentedText, secrets: GatewaySecrets
) -> list[GatewayRequest]:
    to, sender = addresses(gateway, message)
    body: dict[str, Any] = {
        "message_id": message.message_id,
        "to": to,
        "from": sender,
        "text": text.text,
        "encoding": text.encoding,
        "segments": text.count,
        "status_url": status_url(gateway, secrets, message),
    }
    headers = {"Authorization": f"Bearer {secrets.secret}"} if secrets.secret else {}
    return [GatewayRequest("POST", str(gateway.url), json=body, headers=headers)]


def classify(response: GatewayResponse) -> SendResult:
    result = classify_status(response.status, response.body, response.headers.get("Retry-After"))
    document = response.json()
    if result.outcome == "success" and isinstance(document, dict) and "id" in document:
        return SendResult("success", result.detail, None, str(document["id"]))
    return result


def parse_inbound(gateway: GatewayConfig, request: WebhookRequest, region: str) -> list[InboundSMS]:
    document = request.json_object()
    return [
        inbound_message(
            gateway,
            region,
            sender=require(document, "from"),
            recipient=str(document.get("to") or ""),
            text=str(document.get("text") or ""),
            gateway_message_id=document.get("id"),
            keyword=str(document.get("keyword") or ""),
            params=string_params(document, skip=("from", "to", "text", "id", "keyword")),
        )
    ]


def check_signature(
    gateway: GatewayConfig, request: WebhookRequest, secrets: GatewaySecrets
) -> bool:
    key = secrets.signature_secret
    given = request.headers.get(SIGNATURE_HEADER.lower(), "")
    return bool(key) and same("sha256=" + hmac_hex(key or "", request.body), given)


answer = empty_answer
