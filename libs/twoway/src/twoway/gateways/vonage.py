"""Vonage (formerly Nexmo) SMS API.

Out: `POST <url>/sms/json`, form `api_key`, `api_secret`, `from`, `to` (digits, no `+`), `text`,
`type` (`unicode` for UCS-2), `client-ref` (our reference) and, with `public_url`, `callback`
and `status-report-req`. HTTP 200 carries a status per part: `0` success, `1` throttled and `5`
internal error are worth a retry, anything else fails for good with its `error-text`.

In: the inbound-message webhook (`msisdn`, `to`, `text`, `messageId`, `keyword`, `type`,
`message-timestamp`; GET query, form or JSON) and delivery receipts (`messageId`, `status`,
`err-code`, `client-ref`). Signed webhooks (an account setting) carry `sig`: over the sorted
parameters as `&name=value` (with `&` and `=` in values turned into `_`), MD5 of that plus the
signature secret (`md5hash`), or an HMAC keyed with it (`signature_method`).

A long MO arrives part by part, each with `concat=true`, `concat-ref` (shared by the parts),
`concat-total` and `concat-part` (from 1), kept in params: `message_part` reads them
(`twoway.gateways.parts`) and ingress joins the parts.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from twoway.gateways.base import (
    FieldNames,
    GatewayRequest,
    GatewayResponse,
    WebhookRequest,
    addresses,
    callback_url,
    delivery_event,
    empty_answer,
    encode_reference,
    inbound_message,
    require,
    same,
    string_params,
)
from twoway.gateways.config import GatewayConfig, GatewaySecrets
from twoway.gateways.encoding import SegmentedText
from twoway.gateways.parts import InvalidPart, MessagePart, read_part
from twoway.gateways.results import SendResult, classify_status
from twoway.messages import DeliveryEvent, DeliveryStatus, InboundSMS, OutboundSMS

SIGNS = True

RETRY_STATUSES = frozenset({"1", "5"})
"""Throttled, internal error."""

STATUSES: dict[str, DeliveryStatus] = {
    "accepted": "accepted",
    "buffered": "accepted",
    "unknown": "accepted",
    "delivered": "delivered",
    "expired": "expired",
    "failed": "failed",
    "rejected": "failed",
}


def build_requests(
    gateway: GatewayConfig, message: OutboundSMS, text: SegmentedText, secrets: GatewaySecrets
) -> list[GatewayRequest]:
    to, sender = addresses(gateway, message)
    form = {
        "api_key": gateway.account or "",
        "api_secret": secrets.secret or "",
        "to": to,
        "text": text.text,
        "type": "text" if text.encoding == "gsm7" else "unicode",
        "client-ref": encode_reference(gateway, secrets, message),
    }
    if sender:
        form["from"] = sender.removeprefix("+")
    callback = callback_url(gateway, secrets)
    if callback:
        form |= {"callback": callback, "status-report-req": "1"}
    return [GatewayRequest("POST", str(gateway.url).rstrip("/") + "/sms/json", form=form)]


def classify(response: GatewayResponse) -> SendResult:
    document = response.json()
    parts = document.get("messages") if isinstance(document, dict) else None
    if response.status != 200 or not isinstance(parts, list) or not parts:
        return classify_status(response.status, response.body, response.headers.get("Retry-After"))
    failed = [part for part in parts if str(part.get("status")) != "0"]
    if not failed:
        ids = ",".join(str(part.get("message-id", "")) for part in parts)
        return SendResult("success", f"accepted in {len(parts)} part(s)", None, ids)
    status = str(failed[0].get("status"))
    detail = f"Vonage status {status}: {failed[0].get('error-text', '')}"
    return SendResult("retry" if status in RETRY_STATUSES else "permanent", detail)


def _fields(request: WebhookRequest) -> dict[str, str]:
    fields = request.fields()
    if request.content_type == "application/json":
        fields |= string_params(request.json_object())
    return fields


def parse_inbound(gateway: GatewayConfig, request: WebhookRequest, region: str) -> list[InboundSMS]:
    fields = _fields(request)
    named = {"msisdn", "to", "text", "messageId", "keyword", "sig"}
    return [
        inbound_message(
            gateway,
            region,
            sender=require(fields, "msisdn"),
            recipient=fields.get("to", ""),
            text=fields.get("text", ""),
            gateway_message_id=fields.get("messageId"),
            keyword=fields.get("keyword", ""),
            params={key: value for key, value in fields.items() if key not in named},
            names=FieldNames(sender="msisdn"),
        )
    ]


def message_part(gateway: GatewayConfig, request: WebhookRequest) -> MessagePart | None:
    """Which part of a long MO this post is; None for a whole SMS (no `concat`, or one part)."""
    fields = _fields(request)
    concat = fields.get("concat", "").strip().lower()
    if concat not in {"", "true", "false"}:
        raise InvalidPart("concat", f"concat must be true or false, not {concat[:20]!r}")
    if concat != "true":
        return None
    part = read_part(fields, reference="concat-ref", number="concat-part", total="concat-total")
    return part if part.total > 1 else None


def parse_status(
    gateway: GatewayConfig, request: WebhookRequest, secrets: GatewaySecrets
) -> list[DeliveryEvent]:
    fields = _fields(request)
    vonage_status = require(fields, "status")
    status = STATUSES.get(vonage_status, "accepted")
    reference = require(fields, "client-ref")
    error = fields.get("err-code", "0")
    detail = vonage_status if error in {"", "0"} else f"{vonage_status} (err-code {error})"
    return [
        delivery_event(
            gateway,
            secrets,
            reference,
            status,
            gateway_message_id=fields.get("messageId"),
            detail=detail,
        )
    ]


def signature(secret: str, method: str, params: Mapping[str, Any]) -> str:
    """The `sig` of `params` (without `sig`), lower-case hex, as Vonage computes it."""
    payload = "".join(
        f"&{name}={str(params[name]).replace('&', '_').replace('=', '_')}"
        for name in sorted(params)
        if name != "sig"
    ).encode()
    if method == "md5hash":
        return hashlib.md5(payload + secret.encode()).hexdigest()
    return hmac.new(secret.encode(), payload, method).hexdigest()


def check_signature(
    gateway: GatewayConfig, request: WebhookRequest, secrets: GatewaySecrets
) -> bool:
    fields = _fields(request)
    key = secrets.signature_secret
    given = fields.get("sig")
    if not key or not given:
        return False
    return same(signature(key, gateway.signature_method, fields), given.lower())


answer = empty_answer
