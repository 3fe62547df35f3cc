"""Kannel: /cgi-bin/sendsms out (with dlr-url), sms-service post-url/get-url MO and DLRs in."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.unit.dialects.helpers import (
    MESSAGE_ID,
    PUBLIC,
    REGION,
    gateway,
    get,
    outbound,
    ref_query,
    secrets,
)
from twoway.gateways import kannel
from twoway.gateways.base import GatewayResponse, InvalidWebhook, WebhookRequest
from twoway.gateways.encoding import segment

CONFIG = gateway(
    "kannel",
    url="http://kannel:13013/cgi-bin/sendsms",
    account="twoway",
    secret="KANNEL_PASSWORD",
    parameters={"smsc": "smsc1"},
)
DLR_URL = f"{PUBLIC}/gateways/kannel/status?{ref_query(CONFIG)}&type=%d&smsc_id=%F&answer=%A"


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


BUILD_CASES: tuple[tuple[Any, ...], ...] = (
    (
        "gsm-with-dlr",
        {"public_url": PUBLIC},
        {"from": "12345"},
        {
            "username": ["twoway"],
            "password": ["pw"],
            "smsc": ["smsc1"],
            "to": ["+14155552671"],
            "from": ["12345"],
            "text": ["Your balance is 12.00"],
            "charset": ["UTF-8"],
            "coding": ["0"],
            "dlr-mask": ["27"],
            "dlr-url": [DLR_URL],
        },
    ),
    (
        "ucs2-no-dlr",
        {},
        {"text": "Привет"},
        {
            "username": ["twoway"],
            "password": ["pw"],
            "smsc": ["smsc1"],
            "to": ["+14155552671"],
            "text": ["Привет"],
            "charset": ["UTF-8"],
            "coding": ["2"],
        },
    ),
)


@pytest.mark.parametrize(
    ("config", "message", "expected"), [c[1:] for c in BUILD_CASES], ids=[c[0] for c in BUILD_CASES]
)
def test_build_requests(
    config: dict[str, Any], message: dict[str, Any], expected: dict[str, list[str]]
) -> None:
    sms = outbound(**message)
    [request] = kannel.build_requests(
        CONFIG.model_copy(update=config), sms, segment(sms.text), secrets("pw")
    )
    assert request.method == "GET"
    assert request.full_url().startswith("http://kannel:13013/cgi-bin/sendsms?")
    assert query(request.full_url()) == expected


def test_build_requests_udh_parts() -> None:
    config = CONFIG.model_copy(update={"multipart": "udh"})
    sms = outbound(text="a" * 200)
    requests = kannel.build_requests(config, sms, segment(sms.text), secrets("pw"))
    assert [request.params["text"] for request in requests] == ["a" * 153, "a" * 47]
    first, second = (request.params["udh"] for request in requests)
    assert isinstance(first, bytes)
    assert isinstance(second, bytes)
    assert first[:3] == second[:3] == bytes.fromhex("050003")
    assert first[3] == second[3]  # one concatenation reference for both parts
    assert (first[4:], second[4:]) == (bytes([2, 1]), bytes([2, 2]))
    assert "%05%00%03" in requests[0].full_url()


CLASSIFY_CASES = (
    ("accepted", 202, "0: Accepted for delivery", "success"),
    ("queued", 202, "3: Queued for later delivery", "success"),
    ("auth", 403, "Authorization failed for sendsms", "permanent"),
    ("bad-request", 400, "Missing receiver number", "permanent"),
    ("temporal", 503, "Temporal failure, try again later.", "retry"),
)


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [c[1:] for c in CLASSIFY_CASES],
    ids=[c[0] for c in CLASSIFY_CASES],
)
def test_classify(status: int, body: str, outcome: str) -> None:
    result = kannel.classify(GatewayResponse(status, body))
    assert result.outcome == outcome
    assert body in result.detail


POST_URL = f"{PUBLIC}/gateways/kannel/inbound?from=%2B15558675310&to=12345&smsc=smsc1&id=7c1e"
KANNEL_HEADERS = {
    "x-kannel-from": "+15558675310",
    "x-kannel-to": "12345",
    "x-kannel-time": "2026-11-25 10:00:00",
    "x-kannel-smsc": "smsc1",
    "x-kannel-service": "default",
}


def kannel_post(text: bytes, charset: str = "utf-8") -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        url=POST_URL,
        headers=KANNEL_HEADERS,
        query=(("from", "+15558675310"), ("to", "12345"), ("smsc", "smsc1"), ("id", "7c1e")),
        body=text,
        content_type="text/plain",
        charset=charset,
    )


INBOUND_CASES = (
    ("post-url-utf8-body", kannel_post("BAL naïve €".encode()), "BAL naïve €"),
    ("post-url-latin1-body", kannel_post("BAL café".encode("latin-1"), "iso-8859-1"), "BAL café"),
    (
        "get-url-query",
        get(f"{PUBLIC}/gateways/kannel/inbound?from=%2B15558675310&to=12345&text=BAL+now&id=7c1e"),
        "BAL now",
    ),
)


@pytest.mark.parametrize(
    ("request_", "text"), [c[1:] for c in INBOUND_CASES], ids=[c[0] for c in INBOUND_CASES]
)
def test_parse_inbound(request_: WebhookRequest, text: str) -> None:
    [sms] = kannel.parse_inbound(CONFIG, request_, REGION)
    assert (sms.sender, sms.recipient, sms.text, sms.keyword) == (
        "+15558675310",
        "12345",
        text,
        "BAL",
    )
    assert sms.gateway_message_id == "7c1e"
    assert "from" not in sms.params


def test_post_url_headers_become_params() -> None:
    [sms] = kannel.parse_inbound(CONFIG, kannel_post(b"hi"), REGION)
    assert sms.params == {
        "smsc": "smsc1",
        "id": "7c1e",
        "time": "2026-11-25 10:00:00",
        "service": "default",
    }


@pytest.mark.parametrize(
    "request_",
    [
        get(f"{PUBLIC}/gateways/kannel/inbound?from=%2B15558675310"),
        get(f"{PUBLIC}/gateways/kannel/inbound?text=hi"),
        get(f"{PUBLIC}/gateways/kannel/inbound?from=nobody&text=hi"),
        kannel_post(b"\xff\xfe", "utf-8"),
    ],
    ids=["no-text", "no-sender", "bad-sender", "undecodable-body"],
)
def test_parse_inbound_refuses(request_: WebhookRequest) -> None:
    with pytest.raises(InvalidWebhook):
        kannel.parse_inbound(CONFIG, request_, REGION)


def dlr(kind: str, answer: str = "") -> WebhookRequest:
    return get(
        f"{PUBLIC}/gateways/kannel/status?{ref_query(CONFIG)}&type={kind}"
        f"&smsc_id=0A1B2C&answer={answer}"
    )


DLR_CASES = (
    (
        "delivered",
        "1",
        "id:0A1B2C stat:DELIVRD",
        "delivered",
        "delivered to the phone: id:0A1B2C stat:DELIVRD",
    ),
    ("failed", "2", "", "failed", "delivery failed"),
    ("buffered", "4", "", "accepted", "buffered by the SMSC"),
    ("smsc-accepted", "8", "ACK", "accepted", "accepted by the SMSC: ACK"),
    ("smsc-rejected", "16", "NACK/0x0000000b", "failed", "rejected by the SMSC: NACK/0x0000000b"),
)


@pytest.mark.parametrize(
    ("kind", "answer", "status", "detail"),
    [c[1:] for c in DLR_CASES],
    ids=[c[0] for c in DLR_CASES],
)
def test_parse_status(kind: str, answer: str, status: str, detail: str) -> None:
    [event] = kannel.parse_status(CONFIG, dlr(kind, answer), secrets())
    assert (event.outbound_id, event.adapter, event.status, event.detail) == (
        MESSAGE_ID,
        "bank",
        status,
        detail,
    )
    assert event.gateway_message_id == "0A1B2C"


@pytest.mark.parametrize(
    "request_",
    [dlr("3"), dlr("x"), get(f"{PUBLIC}/gateways/kannel/status?type=1")],
    ids=["unknown-type", "not-a-number", "no-reference"],
)
def test_parse_status_refuses(request_: WebhookRequest) -> None:
    with pytest.raises(InvalidWebhook):
        kannel.parse_status(CONFIG, request_, secrets())


def test_answer_is_empty_so_kannel_sends_no_reply() -> None:
    assert kannel.answer("inbound").body == ""
    assert kannel.check_signature(CONFIG, dlr("1"), secrets()) is False


def test_the_dlr_url_carries_the_inbound_token() -> None:
    config = CONFIG.model_copy(update={"public_url": PUBLIC})
    sms = outbound()
    keys = secrets("pw", inbound_token="k-token")
    [request] = kannel.build_requests(config, sms, segment(sms.text), keys)
    assert query(request.full_url())["dlr-url"] == [
        f"{PUBLIC}/gateways/kannel/status?token=k-token&{ref_query(CONFIG)}"
        "&type=%d&smsc_id=%F&answer=%A"
    ]
