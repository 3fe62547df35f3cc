"""Kannel (bearerbox + smsbox), the open-source SMS gateway.

Out: `GET /cgi-bin/sendsms` with `username`, `password`, `from`, `to`, `text`, `charset=UTF-8`,
`coding` (0 GSM-7, 2 UCS-2), `dlr-mask` and `dlr-url`. Kannel answers `202 0: Accepted for
delivery` (or `3: Queued for later delivery`) with no message id, so our reference goes into the
`dlr-url`, which Kannel calls with `%d` (the report type) and `%F` (the SMSC's id). Kannel splits
long texts itself (`max-messages` of the sendsms-user); with `multipart: udh` we split, and send
each part with its concatenation header in `udh`.

In: an `sms-service` whose `post-url` (or `get-url`) points at `/gateways/<id>/inbound`:

    group = sms-service
    keyword = default
    post-url = "https://ingress/gateways/kannel/inbound?from=%p&to=%P&smsc=%i&time=%t&id=%I"
    max-messages = 0     # our answer is empty: no reply SMS from the HTTP response
    omit-empty = true

With `post-url` the text is the `text/plain` body and `X-Kannel-From`, `X-Kannel-To`,
`X-Kannel-Time`, `X-Kannel-SMSC` and `X-Kannel-Service` headers come along; with `get-url` put
`text=%a` in the query. Kannel does not sign: use a token in the URL or `allow_from`.
"""

from __future__ import annotations

from twoway.gateways.base import (
    GatewayRequest,
    GatewayResponse,
    InvalidWebhook,
    WebhookRequest,
    addresses,
    delivery_event,
    empty_answer,
    inbound_message,
    no_signature,
    require,
    status_url,
)
from twoway.gateways.config import GatewayConfig, GatewaySecrets
from twoway.gateways.encoding import SegmentedText, concatenation_reference, concatenation_udh
from twoway.gateways.results import SendResult, classify_status
from twoway.messages import DeliveryEvent, DeliveryStatus, InboundSMS, OutboundSMS

SIGNS = False

DLR_TYPES: dict[int, tuple[DeliveryStatus, str]] = {
    1: ("delivered", "delivered to the phone"),
    2: ("failed", "delivery failed"),
    4: ("accepted", "buffered by the SMSC"),
    8: ("accepted", "accepted by the SMSC"),
    16: ("failed", "rejected by the SMSC"),
}
"""Kannel's `%d` delivery-report types."""

DLR_ESCAPES = "&type=%d&smsc_id=%F&answer=%A"
"""What Kannel fills into our `dlr-url`: the report type, the SMSC's id and its answer."""

_HEADERS = {"x-kannel-smsc": "smsc", "x-kannel-time": "time", "x-kannel-service": "service"}


def build_requests(
    gateway: GatewayConfig, message: OutboundSMS, text: SegmentedText, secrets: GatewaySecrets
) -> list[GatewayRequest]:
    to, sender = addresses(gateway, message)
    params: dict[str, str | bytes] = {
        **gateway.parameters,
        **secrets.parameters,
        "username": gateway.account or "",
        "password": secrets.secret or "",
        "to": to,
        "charset": "UTF-8",
        "coding": "0" if text.encoding == "gsm7" else "2",
    }
    if sender:
        params["from"] = sender
    dlr_url = status_url(gateway, secrets, message, DLR_ESCAPES)
    if dlr_url:
        params |= {"dlr-mask": str(gateway.dlr_mask), "dlr-url": dlr_url}
    url = str(gateway.url)
    if gateway.multipart != "udh" or text.count == 1:
        return [GatewayRequest("GET", url, params={**params, "text": text.text})]
    reference = concatenation_reference(message.message_id)
    return [
        GatewayRequest(
            "GET",
            url,
            params={
                **params,
                "text": part,
                "udh": concatenation_udh(reference, text.count, sequence),
            },
        )
        for sequence, part in enumerate(text.parts, start=1)
    ]


def classify(response: GatewayResponse) -> SendResult:
    return classify_status(response.status, response.body, response.headers.get("Retry-After"))


def parse_inbound(gateway: GatewayConfig, request: WebhookRequest, region: str) -> list[InboundSMS]:
    fields = request.fields()
    headers = request.headers
    if request.method == "POST" and request.body:
        text = request.text()
    elif "text" in fields:
        text = fields["text"]
    else:
        raise InvalidWebhook("text is required: the body (post-url) or text=%a (get-url)")
    sender = headers.get("x-kannel-from") or require(fields, "from")
    params = {key: value for key, value in fields.items() if key not in {"from", "to", "text"}}
    params |= {name: headers[header] for header, name in _HEADERS.items() if header in headers}
    return [
        inbound_message(
            gateway,
            region,
            sender=sender,
            recipient=headers.get("x-kannel-to") or fields.get("to", ""),
            text=text,
            gateway_message_id=fields.get("id"),
            params=params,
        )
    ]


def parse_status(
    gateway: GatewayConfig, request: WebhookRequest, secrets: GatewaySecrets
) -> list[DeliveryEvent]:
    fields = request.fields()
    kind = require(fields, "type")
    if not kind.isdigit() or int(kind) not in DLR_TYPES:
        raise InvalidWebhook(f"type must be a Kannel report type {sorted(DLR_TYPES)}: {kind!r}")
    status, meaning = DLR_TYPES[int(kind)]
    answer_text = fields.get("answer", "")
    return [
        delivery_event(
            gateway,
            secrets,
            require(fields, "ref"),
            status,
            gateway_message_id=fields.get("smsc_id"),
            detail=f"{meaning}: {answer_text}" if answer_text else meaning,
        )
    ]


check_signature = no_signature


# Empty: with `max-messages = 0` or `omit-empty`, Kannel sends no reply SMS.
answer = empty_answer
