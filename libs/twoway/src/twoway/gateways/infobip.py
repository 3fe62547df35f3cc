"""Infobip SMS API (v3).

Out: `POST <url>/sms/3/messages` with `Authorization: App <API key>` and a JSON body: one message
with `sender`, `destinations: [{to, messageId}]` (our message id is Infobip's message id),
`content: {text}` and `webhooks: {callbackData}` carrying our reference (and `delivery: {url}`
with `public_url`). Once Infobip enables idempotency for the account's channels, it drops a
second message with the same `messageId` within its grace period: such a gateway can take
`in_doubt: resend` (`twoway.gateways.config`). The answer lists each message's status object;
the `PENDING` and `DELIVERED` groups are success, `REJECTED` and `UNDELIVERABLE` fail for good.
429 and 5xx retry.

In: incoming messages are posted as JSON `{"results": [{messageId, from, to, text, cleanText,
keyword, receivedAt, ...}]}`, delivery reports as `{"results": [{messageId, status: {groupName,
name, ...}, error: {...}, callbackData, ...}]}`: several per post. Infobip does not sign its
webhooks: use a token in the URL or `allow_from`.
"""

from __future__ import annotations

from typing import Any

from twoway.gateways.base import (
    GatewayRequest,
    GatewayResponse,
    InvalidWebhook,
    WebhookRequest,
    addresses,
    callback_url,
    delivery_event,
    empty_answer,
    encode_reference,
    inbound_message,
    no_signature,
    require,
    string_params,
)
from twoway.gateways.config import GatewayConfig, GatewaySecrets
from twoway.gateways.encoding import SegmentedText
from twoway.gateways.results import SendResult, classify_status
from twoway.messages import DeliveryEvent, DeliveryStatus, InboundSMS, OutboundSMS

SIGNS = False

GROUPS: dict[str, DeliveryStatus] = {
    "PENDING": "accepted",
    "ACCEPTED": "accepted",
    "DELIVERED": "delivered",
    "UNDELIVERABLE": "failed",
    "REJECTED": "failed",
    "EXPIRED": "expired",
}
"""Infobip's status groups."""

FAILED_GROUPS = frozenset({"UNDELIVERABLE", "REJECTED", "EXPIRED"})


def build_requests(
    gateway: GatewayConfig, message: OutboundSMS, text: SegmentedText, secrets: GatewaySecrets
) -> list[GatewayRequest]:
    to, sender = addresses(gateway, message)
    sms: dict[str, Any] = {
        "destinations": [{"to": to, "messageId": message.message_id}],
        "content": {"text": text.text},
    }
    if sender:
        sms["sender"] = sender
    # callbackData comes back in every delivery report, also those sent to a URL set up in
    # Infobip's portal instead of `public_url`: it is the only field carrying our signature.
    sms["webhooks"] = {"callbackData": encode_reference(gateway, secrets, message)}
    callback = callback_url(gateway, secrets)
    if callback:
        sms["webhooks"]["delivery"] = {"url": callback}
    return [
        GatewayRequest(
            "POST",
            str(gateway.url).rstrip("/") + "/sms/3/messages",
            json={"messages": [sms]},
            headers={"Authorization": f"App {secrets.secret}", "Accept": "application/json"},
        )
    ]


def _error_text(document: Any) -> str | None:
    try:
        return str(document["requestError"]["serviceException"]["text"])
    except (KeyError, TypeError):
        return None


def classify(response: GatewayResponse) -> SendResult:
    document = response.json()
    if not 200 <= response.status < 300:
        body = _error_text(document) or response.body
        return classify_status(response.status, body, response.headers.get("Retry-After"))
    try:
        [sent] = document["messages"]
        group = str(sent["status"]["groupName"])
        name = str(sent["status"].get("name", group))
    except (KeyError, TypeError, ValueError):
        return SendResult("success", f"HTTP {response.status}: {response.body[:200]}")
    if group in FAILED_GROUPS:
        return SendResult("permanent", f"Infobip {group}: {name}")
    return SendResult("success", f"Infobip {group}: {name}", None, sent.get("messageId"))


def _results(request: WebhookRequest) -> list[dict[str, Any]]:
    results = request.json_object().get("results")
    if not isinstance(results, list) or not all(isinstance(item, dict) for item in results):
        raise InvalidWebhook("results must be a list of objects")
    return results


def parse_inbound(gateway: GatewayConfig, request: WebhookRequest, region: str) -> list[InboundSMS]:
    named = ("from", "to", "text", "messageId", "keyword")
    return [
        inbound_message(
            gateway,
            region,
            sender=require(result, "from"),
            recipient=str(result.get("to", "")),
            text=str(result.get("text", "")),
            gateway_message_id=result.get("messageId"),
            keyword=str(result.get("keyword") or ""),
            params=string_params(result, skip=named),
        )
        for result in _results(request)
    ]


def parse_status(
    gateway: GatewayConfig, request: WebhookRequest, secrets: GatewaySecrets
) -> list[DeliveryEvent]:
    events = []
    for result in _results(request):
        status_object = result.get("status")
        if not isinstance(status_object, dict):
            raise InvalidWebhook("status must be an object")
        group = str(status_object.get("groupName", ""))
        status = GROUPS.get(group)
        if status is None:
            raise InvalidWebhook(f"unknown status group {group!r}")
        error = result.get("error")
        detail = str(status_object.get("name", group))
        if isinstance(error, dict) and error.get("id", 0) != 0:
            detail += f" ({error.get('name', '')})"
        events.append(
            delivery_event(
                gateway,
                secrets,
                require(result, "callbackData"),
                status,
                gateway_message_id=result.get("messageId"),
                detail=detail,
            )
        )
    return events


check_signature = no_signature


answer = empty_answer
