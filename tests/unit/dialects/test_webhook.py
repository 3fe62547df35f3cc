"""The generic JSON webhook gateway, and the MobileFirst HTTP gateway's inbound side."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.dialects.helpers import (
    MESSAGE_ID,
    PUBLIC,
    REGION,
    form_post,
    gateway,
    get,
    json_post,
    outbound,
    ref_query,
    secrets,
)
from twoway.gateways import mobilefirst, webhook
from twoway.gateways.base import GatewayRequest, GatewayResponse, InvalidWebhook, WebhookRequest
from twoway.gateways.encoding import segment

CONFIG = gateway("webhook", url="https://bridge.example.com/sms", public_url=PUBLIC)
STATUS = f"{PUBLIC}/gateways/webhook/status?{ref_query(CONFIG)}"


def test_build_requests() -> None:
    sms = outbound(text="ж" * 71)
    [request] = webhook.build_requests(CONFIG, sms, segment(sms.text), secrets("tok"))
    assert request == GatewayRequest(
        "POST",
        "https://bridge.example.com/sms",
        json={
            "message_id": MESSAGE_ID,
            "to": "+14155552671",
            "from": None,
            "text": "ж" * 71,
            "encoding": "ucs2",
            "segments": 2,
            "status_url": STATUS,
        },
        headers={"Authorization": "Bearer tok"},
    )


@pytest.mark.parametrize(
    ("status", "body", "outcome", "gateway_id"),
    [
        (202, '{"id": "g-1"}', "success", "g-1"),
        (200, "ok", "success", None),
        (422, '{"id": "g-1"}', "permanent", None),
        (503, "", "retry", None),
    ],
    ids=["id", "no-json", "client-error", "unavailable"],
)
def test_classify(status: int, body: str, outcome: str, gateway_id: str | None) -> None:
    result = webhook.classify(GatewayResponse(status, body))
    assert (result.outcome, result.gateway_message_id) == (outcome, gateway_id)


def test_parse_inbound() -> None:
    document = {"from": "+15558675310", "to": "12345", "text": "bal", "id": "g-9", "extra": 3}
    [sms] = webhook.parse_inbound(CONFIG, json_post(f"{PUBLIC}/in", document), REGION)
    assert (sms.sender, sms.recipient, sms.text, sms.keyword, sms.gateway_message_id) == (
        "+15558675310",
        "12345",
        "bal",
        "BAL",
        "g-9",
    )
    assert sms.params == {"extra": "3"}


@pytest.mark.parametrize(
    "request_",
    [
        json_post(f"{PUBLIC}/in", {"text": "x"}),
        json_post(f"{PUBLIC}/in", ["x"]),
        WebhookRequest("POST", f"{PUBLIC}/in", {}, body=b"{nope", content_type="application/json"),
    ],
    ids=["no-from", "not-an-object", "not-json"],
)
def test_parse_inbound_refuses(request_: WebhookRequest) -> None:
    with pytest.raises(InvalidWebhook):
        webhook.parse_inbound(CONFIG, request_, REGION)


def signed(body: dict[str, Any], key: str) -> WebhookRequest:
    raw = json.dumps(body).encode()
    digest = hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()
    request = json_post(f"{PUBLIC}/in", body, {"X-Twoway-Signature": f"sha256={digest}"})
    assert request.body == raw
    return request


@pytest.mark.parametrize(
    ("request_", "valid"),
    [
        (signed({"from": "+1", "text": "x"}, "whsec"), True),
        (signed({"from": "+1", "text": "x"}, "other"), False),
        (json_post(f"{PUBLIC}/in", {"from": "+1"}), False),
    ],
    ids=["good", "bad", "missing"],
)
def test_check_signature(request_: WebhookRequest, valid: bool) -> None:
    assert webhook.check_signature(CONFIG, request_, secrets(signature_secret="whsec")) is valid


MOBILEFIRST = gateway(
    "mobilefirst-http", to_param="dest", from_param="src", text_param="msg", status_param="dlr"
)

MOBILEFIRST_STATUS = f"{PUBLIC}/gateways/mobilefirst-http/status?{ref_query(MOBILEFIRST)}"

STATUS_CASES: tuple[tuple[str, Callable[[str], WebhookRequest], str, str | None], ...] = (
    ("get", lambda url: get(f"{url}&status=delivered&id=g-1"), "delivered", "g-1"),
    (
        "form",
        lambda url: form_post(url, {"status": "FAILED", "detail": "no route"}),
        "failed",
        None,
    ),
    ("json", lambda url: json_post(url, {"status": "expired"}), "expired", None),
)


@pytest.mark.parametrize(
    ("post", "status", "gateway_id"),
    [c[1:] for c in STATUS_CASES],
    ids=[c[0] for c in STATUS_CASES],
)
def test_mobilefirst_and_webhook_status(
    post: Callable[[str], WebhookRequest], status: str, gateway_id: str | None
) -> None:
    for dialect, config, url in (
        (mobilefirst, MOBILEFIRST, MOBILEFIRST_STATUS),
        (webhook, CONFIG, STATUS),
    ):
        [event] = dialect.parse_status(config, post(url), secrets())
        assert (event.outbound_id, event.adapter, event.status, event.gateway_message_id) == (
            MESSAGE_ID,
            "bank",
            status,
            gateway_id,
        )


@pytest.mark.parametrize(
    "request_",
    [
        get(f"{MOBILEFIRST_STATUS}&status=lost"),
        get(f"{MOBILEFIRST_STATUS}&status=unknown"),  # outbound's judgement, not a gateway's
        get(f"{PUBLIC}/s?status=delivered"),
        get(MOBILEFIRST_STATUS),
    ],
    ids=["unknown-status", "our-unknown", "no-reference", "no-status"],
)
def test_status_refused(request_: WebhookRequest) -> None:
    with pytest.raises(InvalidWebhook):
        mobilefirst.parse_status(MOBILEFIRST, request_, secrets())


def test_mobilefirst_inbound_uses_configured_names() -> None:
    request = get(f"{PUBLIC}/in?src=%2B15558675310&dest=12345&msg=BAL+now&keyword=bal&smsc=x")
    [sms] = mobilefirst.parse_inbound(MOBILEFIRST, request, REGION)
    assert (sms.sender, sms.recipient, sms.text, sms.keyword, sms.params) == (
        "+15558675310",
        "12345",
        "BAL now",
        "BAL",
        {"smsc": "x"},
    )


def test_mobilefirst_inbound_needs_text() -> None:
    with pytest.raises(InvalidWebhook, match="msg"):
        mobilefirst.parse_inbound(MOBILEFIRST, get(f"{PUBLIC}/in?src=%2B15558675310"), REGION)


def test_mobilefirst_status_url_parameter() -> None:
    config = MOBILEFIRST.model_copy(update={"public_url": PUBLIC})
    sms = outbound()
    [request] = mobilefirst.build_requests(config, sms, segment(sms.text), secrets())
    assert request.params["dlr"] == MOBILEFIRST_STATUS
