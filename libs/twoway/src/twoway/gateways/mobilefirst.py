"""The MobileFirst generic HTTP gateway (SMSConfig.xml): one request with configurable names.

Out: `GET http://host:port/programName?to=..&text=..&from=..` plus fixed and secret parameters
(or the same as a form POST); with `status_param` and `public_url`, one more parameter carries the
URL for delivery reports. Any 2xx is success (`twoway.gateways.results`).
In: the gateway posts MO with the same parameter names (query, form or JSON); every other
parameter is kept. This is also the dialect of MobileFirst's own `/receiveSMS` (`from`, `to`,
`text`, `keyword`), which ingress serves for the gateway named by `TWOWAY_RECEIVE_GATEWAY`.
Delivery reports come to that URL with `status` (one of our statuses) and optionally `id` and
`detail`. Authenticity: token, basic auth or source address (no signature).
"""

from __future__ import annotations

from twoway.gateways.base import (
    DELIVERY_STATUSES,
    JSON_TYPES,
    FieldNames,
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
    string_params,
)
from twoway.gateways.config import GatewayConfig, GatewaySecrets
from twoway.gateways.encoding import SegmentedText
from twoway.gateways.results import SendResult, classify_status
from twoway.messages import DeliveryEvent, InboundSMS, OutboundSMS

SIGNS = False


def build_requests(
    gateway: GatewayConfig, message: OutboundSMS, text: SegmentedText, secrets: GatewaySecrets
) -> list[GatewayRequest]:
    to, sender = addresses(gateway, message)
    params = {
        **gateway.parameters,
        **secrets.parameters,
        gateway.to_param: to,
        gateway.text_param: text.text,
    }
    if sender:
        params[gateway.from_param] = sender
    callback = status_url(gateway, secrets, message)
    if gateway.status_param and callback:
        params[gateway.status_param] = callback
    url = str(gateway.url)
    if gateway.method == "GET":
        return [GatewayRequest("GET", url, params=params)]
    return [GatewayRequest("POST", url, form=params)]


def classify(response: GatewayResponse) -> SendResult:
    return classify_status(response.status, response.body, response.headers.get("Retry-After"))


def _fields(request: WebhookRequest) -> dict[str, str]:
    """Every parameter: the query's, then a form's or a JSON object's over them (JSON booleans as
    `true`/`false`, nested values as JSON text). Any other body is refused."""
    fields = request.fields()
    if request.content_type in JSON_TYPES or request.content_type.endswith("+json"):
        fields |= string_params(request.json_object())
    elif request.body and not request.form:
        raise InvalidWebhook(
            "post a form (application/x-www-form-urlencoded or multipart/form-data) or a JSON "
            "object",
            code="unsupported_media_type",
            status=415,
        )
    return fields


def parse_inbound(gateway: GatewayConfig, request: WebhookRequest, region: str) -> list[InboundSMS]:
    fields = _fields(request)
    named = {gateway.from_param, gateway.to_param, gateway.text_param, "keyword"}
    if gateway.text_param not in fields:
        raise InvalidWebhook(
            f"{gateway.text_param} is required: the message text",
            code="missing_field",
            field=gateway.text_param,
        )
    return [
        inbound_message(
            gateway,
            region,
            sender=require(fields, gateway.from_param),
            recipient=fields.get(gateway.to_param, ""),
            text=fields[gateway.text_param],
            keyword=fields.get("keyword", ""),
            params={key: value for key, value in fields.items() if key not in named},
            names=FieldNames(gateway.from_param, gateway.to_param, gateway.text_param),
        )
    ]


def parse_status(
    gateway: GatewayConfig, request: WebhookRequest, secrets: GatewaySecrets
) -> list[DeliveryEvent]:
    fields = _fields(request)
    status = DELIVERY_STATUSES.get(require(fields, "status").lower())
    if status is None:
        raise InvalidWebhook(f"status must be one of {sorted(DELIVERY_STATUSES)}")
    return [
        delivery_event(
            gateway,
            secrets,
            require(fields, "ref"),
            status,
            gateway_message_id=fields.get("id"),
            detail=fields.get("detail", ""),
        )
    ]


check_signature = no_signature


answer = empty_answer
