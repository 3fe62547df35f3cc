"""Infobip SMS API v3: send and its status groups, inbound JSON, delivery reports."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.dialects.helpers import (
    MESSAGE_ID,
    PUBLIC,
    REGION,
    gateway,
    json_post,
    outbound,
    reference,
    secrets,
)
from twoway.gateways import infobip
from twoway.gateways.base import GatewayRequest, GatewayResponse, InvalidWebhook
from twoway.gateways.encoding import segment

CONFIG = gateway("infobip", url="https://xyz.api.infobip.com", secret="INFOBIP_API_KEY")
STATUS_URL = f"{PUBLIC}/gateways/infobip/status"

INBOUND = {  # Infobip's documented incoming-messages payload
    "results": [
        {
            "messageId": "817790313235066447",
            "from": "385916242493",
            "to": "385921004026",
            "text": "QUIZ Correct answer is Paris",
            "cleanText": "Correct answer is Paris",
            "keyword": "QUIZ",
            "receivedAt": "2019-11-09T16:00:00.000+0000",
            "smsCount": 1,
            "price": {"pricePerMessage": 0, "currency": "EUR"},
            "callbackData": "callbackData",
        },
        {
            "messageId": "817790313235066448",
            "from": "385916242494",
            "to": "385921004026",
            "text": "hi",
        },
    ],
    "messageCount": 2,
    "pendingMessageCount": 0,
}


def report(group: str, name: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "bulkId": "BULK-ID-123-xyz",
        "messageId": MESSAGE_ID,
        "to": "41793026727",
        "sentAt": "2019-11-09T16:00:00.000+0000",
        "doneAt": "2019-11-09T16:00:00.000+0000",
        "smsCount": 1,
        "price": {"pricePerMessage": 0.01, "currency": "EUR"},
        "status": {
            "groupId": 3,
            "groupName": group,
            "id": 5,
            "name": name,
            "description": "Message delivered to handset",
        },
        "error": error
        or {
            "groupId": 0,
            "groupName": "OK",
            "id": 0,
            "name": "NO_ERROR",
            "description": "No Error",
            "permanent": False,
        },
        "callbackData": reference(CONFIG),
    }


BUILD_CASES: tuple[tuple[Any, ...], ...] = (
    (
        "with-sender-and-webhook",
        {"public_url": PUBLIC, "default_sender": "InfoSMS"},
        {
            "sender": "InfoSMS",
            "webhooks": {"delivery": {"url": STATUS_URL}, "callbackData": reference(CONFIG)},
        },
    ),
    # reports to a URL set up in Infobip's portal carry callbackData too
    ("bare", {}, {"webhooks": {"callbackData": reference(CONFIG)}}),
)


@pytest.mark.parametrize(
    ("config", "fields"), [c[1:] for c in BUILD_CASES], ids=[c[0] for c in BUILD_CASES]
)
def test_build_requests(config: dict[str, Any], fields: dict[str, Any]) -> None:
    sms = outbound()
    [request] = infobip.build_requests(
        CONFIG.model_copy(update=config), sms, segment(sms.text), secrets("key")
    )
    message = {
        "destinations": [{"to": "14155552671", "messageId": MESSAGE_ID}],
        "content": {"text": "Your balance is 12.00"},
        **fields,
    }
    assert request == GatewayRequest(
        "POST",
        "https://xyz.api.infobip.com/sms/3/messages",
        json={"messages": [message]},
        headers={"Authorization": "App key", "Accept": "application/json"},
    )


def sent(group: str, name: str) -> str:
    return (
        '{"bulkId": "2034072219640523072", "messages": [{"messageId": "m-1", '
        f'"status": {{"groupId": 1, "groupName": "{group}", "id": 26, "name": "{name}"}}, '
        '"destination": "41793026727"}]}'
    )


ERROR = (
    '{"requestError": {"serviceException": '
    '{"messageId": "UNAUTHORIZED", "text": "Invalid login details"}}}'
)

CLASSIFY_CASES = (
    ("pending", 200, sent("PENDING", "PENDING_ACCEPTED"), "success", "m-1", "PENDING_ACCEPTED"),
    ("rejected", 200, sent("REJECTED", "REJECTED_DESTINATION"), "permanent", None, "REJECTED"),
    ("unauthorized", 401, ERROR, "permanent", None, "Invalid login details"),
    ("too-many", 429, ERROR, "retry", None, "HTTP 429"),
    ("server", 502, "bad gateway", "retry", None, "bad gateway"),
    ("unexpected-2xx", 200, "{}", "success", None, "HTTP 200"),
)


@pytest.mark.parametrize(
    ("status", "body", "outcome", "gateway_id", "detail"),
    [c[1:] for c in CLASSIFY_CASES],
    ids=[c[0] for c in CLASSIFY_CASES],
)
def test_classify(
    status: int, body: str, outcome: str, gateway_id: str | None, detail: str
) -> None:
    result = infobip.classify(GatewayResponse(status, body))
    assert (result.outcome, result.gateway_message_id) == (outcome, gateway_id)
    assert detail in result.detail


def test_parse_inbound_takes_every_result() -> None:
    first, second = infobip.parse_inbound(
        CONFIG, json_post(f"{PUBLIC}/gateways/infobip/inbound", INBOUND), REGION
    )
    assert (first.sender, first.recipient, first.text, first.keyword) == (
        "+385916242493",
        "+385921004026",  # the own number as configured, whatever the gateway's spelling
        "QUIZ Correct answer is Paris",
        "QUIZ",
    )
    assert first.gateway_message_id == "817790313235066447"
    assert first.params["cleanText"] == "Correct answer is Paris"
    assert first.params["price"] == '{"pricePerMessage":0,"currency":"EUR"}'
    assert (second.sender, second.keyword) == ("+385916242494", "HI")


STATUS_CASES = (
    ("delivered", report("DELIVERED", "DELIVERED_TO_HANDSET"), "delivered", "DELIVERED_TO_HANDSET"),
    ("pending", report("PENDING", "PENDING_ENROUTE"), "accepted", "PENDING_ENROUTE"),
    ("expired", report("EXPIRED", "EXPIRED_EXPIRED"), "expired", "EXPIRED_EXPIRED"),
    (
        "undeliverable",
        report(
            "UNDELIVERABLE",
            "UNDELIVERABLE_NOT_DELIVERED",
            {"groupId": 1, "id": 27, "name": "EC_ABSENT_SUBSCRIBER", "permanent": False},
        ),
        "failed",
        "UNDELIVERABLE_NOT_DELIVERED (EC_ABSENT_SUBSCRIBER)",
    ),
    ("rejected", report("REJECTED", "REJECTED_NETWORK"), "failed", "REJECTED_NETWORK"),
)


@pytest.mark.parametrize(
    ("result", "status", "detail"), [c[1:] for c in STATUS_CASES], ids=[c[0] for c in STATUS_CASES]
)
def test_parse_status(result: dict[str, Any], status: str, detail: str) -> None:
    [event] = infobip.parse_status(CONFIG, json_post(STATUS_URL, {"results": [result]}), secrets())
    assert (event.outbound_id, event.adapter, event.status, event.detail) == (
        MESSAGE_ID,
        "bank",
        status,
        detail,
    )


def test_status_without_callback_data_is_refused_though_it_names_our_message_id() -> None:
    result = {
        key: value for key, value in report("DELIVERED", "D").items() if key != "callbackData"
    }
    with pytest.raises(InvalidWebhook, match="callbackData"):
        infobip.parse_status(CONFIG, json_post(STATUS_URL, {"results": [result]}), secrets())


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"results": "x"},
        {"results": [1]},
        {"results": [{"messageId": "m", "status": "x"}]},
        {"results": [report("WEIRD", "W")]},
    ],
    ids=[
        "no-results",
        "results-not-list",
        "result-not-object",
        "status-not-object",
        "unknown-group",
    ],
)
def test_parse_status_refuses(document: dict[str, Any]) -> None:
    with pytest.raises(InvalidWebhook):
        infobip.parse_status(CONFIG, json_post(STATUS_URL, document), secrets())
