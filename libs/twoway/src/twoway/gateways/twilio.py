"""Twilio Programmable Messaging.

Out: `POST <url>/2010-04-01/Accounts/<account>/Messages.json`, form `To`, `From` (or
`MessagingServiceSid` when the sender is an `MG...` service), `Body` and `StatusCallback`, with
HTTP basic auth (Account SID, auth token). `201` answers the Message resource; its `sid` is the
gateway's id. Errors are JSON `{"code", "message", "status"}`; 429 carries Retry-After.

In: the incoming-message webhook and the status callback are form posts (`From`, `To`, `Body`,
`MessageSid`; `MessageStatus`, `ErrorCode`) signed with `X-Twilio-Signature`: base64 of
HMAC-SHA1, keyed with the auth token, over the URL Twilio called followed by every POST parameter,
sorted, as name and value. Behind a proxy that URL is rebuilt from `X-Forwarded-Proto` and
`X-Forwarded-Host` (ingress does that); like Twilio's own validator we accept it with or without
the default port. The webhook answer is an empty TwiML `<Response/>`: no reply from Twilio.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlsplit, urlunsplit

from twoway.gateways.base import (
    EMPTY_ANSWER,
    FieldNames,
    GatewayRequest,
    GatewayResponse,
    Pairs,
    WebhookAnswer,
    WebhookRequest,
    addresses,
    delivery_event,
    inbound_message,
    require,
    same,
    status_url,
)
from twoway.gateways.config import GatewayConfig, GatewaySecrets
from twoway.gateways.encoding import SegmentedText
from twoway.gateways.results import SendResult, classify_status
from twoway.messages import DeliveryEvent, DeliveryStatus, InboundSMS, OutboundSMS

SIGNS = True

STATUSES: dict[str, DeliveryStatus] = {
    "queued": "accepted",
    "accepted": "accepted",
    "scheduled": "accepted",
    "sending": "accepted",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "partially_delivered": "delivered",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}
"""Twilio's MessageStatus values (receiving/received are inbound: no event)."""

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

_DEFAULT_PORTS = {"https": 443, "http": 80}


def build_requests(
    gateway: GatewayConfig, message: OutboundSMS, text: SegmentedText, secrets: GatewaySecrets
) -> list[GatewayRequest]:
    to, sender = addresses(gateway, message)
    form = {"To": to, "Body": text.text}
    if sender and sender.startswith("MG"):
        form["MessagingServiceSid"] = sender
    elif sender:
        form["From"] = sender
    callback = status_url(gateway, secrets, message)
    if callback:
        form["StatusCallback"] = callback
    base = str(gateway.url).rstrip("/")
    return [
        GatewayRequest(
            "POST",
            f"{base}/2010-04-01/Accounts/{gateway.account}/Messages.json",
            form=form,
            basic_auth=(gateway.account or "", secrets.secret or ""),
        )
    ]


def classify(response: GatewayResponse) -> SendResult:
    document = response.json()
    details = document if isinstance(document, dict) else {}
    if 200 <= response.status < 300:
        sid = details.get("sid")
        return SendResult(
            "success", f"HTTP {response.status}: {details.get('status', '')}".strip(), None, sid
        )
    body = response.body
    if "code" in details:
        body = f"Twilio error {details['code']}: {details.get('message', '')}"
    return classify_status(response.status, body, response.headers.get("Retry-After"))


def parse_inbound(gateway: GatewayConfig, request: WebhookRequest, region: str) -> list[InboundSMS]:
    fields = request.fields()
    named = {"From", "To", "Body", "MessageSid"}
    return [
        inbound_message(
            gateway,
            region,
            sender=require(fields, "From"),
            recipient=fields.get("To", ""),
            text=fields.get("Body", ""),
            gateway_message_id=fields.get("MessageSid") or fields.get("SmsSid"),
            params={key: value for key, value in fields.items() if key not in named},
            names=FieldNames("From", "To", "Body"),
        )
    ]


def parse_status(
    gateway: GatewayConfig, request: WebhookRequest, secrets: GatewaySecrets
) -> list[DeliveryEvent]:
    fields = request.fields()
    twilio_status = require(fields, "MessageStatus")
    status = STATUSES.get(twilio_status)
    if status is None:
        return []
    error = fields.get("ErrorCode")
    return [
        delivery_event(
            gateway,
            secrets,
            require(fields, "ref"),
            status,
            gateway_message_id=fields.get("MessageSid"),
            detail=f"{twilio_status} (error {error})" if error else twilio_status,
        )
    ]


def signature(auth_token: str, url: str, params: Pairs) -> str:
    """X-Twilio-Signature of a request to `url` with POST `params`."""
    payload = url + "".join(
        name + value
        for name in sorted({name for name, _ in params})
        for value in sorted({value for key, value in params if key == name})
    )
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _port_variants(url: str) -> set[str]:
    """`url` as given, with its default port and without it (Twilio signs either)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    with_port = parts._replace(netloc=f"{host}:{port}" if port else host)
    without_port = parts._replace(netloc=host)
    return {url, urlunsplit(with_port), urlunsplit(without_port)}


def check_signature(
    gateway: GatewayConfig, request: WebhookRequest, secrets: GatewaySecrets
) -> bool:
    given = request.headers.get("x-twilio-signature")
    key = secrets.signature_secret
    if not given or not key:
        return False
    return any(
        same(signature(key, url, request.form), given) for url in _port_variants(request.url)
    )


def answer(kind: str) -> WebhookAnswer:
    if kind == "inbound":
        return WebhookAnswer(200, EMPTY_TWIML, "text/xml")
    return EMPTY_ANSWER
