"""Vonage SMS API: send and its per-part statuses, inbound webhook, delivery receipts, `sig`."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from tests.unit.dialects.helpers import (
    MESSAGE_ID,
    PUBLIC,
    REFERENCE,
    REGION,
    form_post,
    gateway,
    get,
    json_post,
    outbound,
    secrets,
)
from twoway.gateways import vonage
from twoway.gateways.base import GatewayRequest, GatewayResponse, InvalidWebhook, WebhookRequest
from twoway.gateways.encoding import segment

CONFIG = gateway(
    "vonage", url="https://rest.nexmo.com", account="abcd1234", secret="VONAGE_API_SECRET"
)
INBOUND_URL = f"{PUBLIC}/gateways/vonage/inbound"
STATUS_URL = f"{PUBLIC}/gateways/vonage/status"

INBOUND = {  # Vonage's documented inbound-message fields
    "msisdn": "447700900001",
    "to": "447700900000",
    "messageId": "0A0000000123ABCD1",
    "text": "Hello world",
    "type": "text",
    "keyword": "HELLO",
    "message-timestamp": "2020-01-01 12:00:00",
}

RECEIPT = {  # Vonage's documented delivery receipt fields
    "msisdn": "447700900000",
    "to": "AcmeInc",
    "network-code": "12345",
    "messageId": "0A0000001234567B",
    "price": "0.03330000",
    "status": "delivered",
    "scts": "2001011400",
    "err-code": "0",
    "api-key": "abcd1234",
    "client-ref": REFERENCE,
    "message-timestamp": "2020-01-01 12:00:00 +0000",
}


BUILD_CASES: tuple[tuple[Any, ...], ...] = (
    (
        "gsm-with-callback",
        {"public_url": PUBLIC},
        {"from": "+447700900000"},
        {"type": "text", "from": "447700900000", "callback": STATUS_URL, "status-report-req": "1"},
    ),
    ("unicode-no-callback", {}, {"text": "Привет"}, {"type": "unicode", "text": "Привет"}),
)


@pytest.mark.parametrize(
    ("config", "message", "fields"), [c[1:] for c in BUILD_CASES], ids=[c[0] for c in BUILD_CASES]
)
def test_build_requests(
    config: dict[str, Any], message: dict[str, Any], fields: dict[str, str]
) -> None:
    sms = outbound(**message)
    [request] = vonage.build_requests(
        CONFIG.model_copy(update=config), sms, segment(sms.text), secrets("sec")
    )
    expected = {
        "api_key": "abcd1234",
        "api_secret": "sec",
        "to": "14155552671",
        "text": "Your balance is 12.00",
        "client-ref": REFERENCE,
        **fields,
    }
    assert request == GatewayRequest("POST", "https://rest.nexmo.com/sms/json", form=expected)


def sent(*statuses: str) -> str:
    parts = ",".join(
        f'{{"to": "447700900000", "message-id": "0C00000{n}", "status": "{status}",'
        f' "error-text": "reason {status}"}}'
        for n, status in enumerate(statuses)
    )
    return f'{{"message-count": "{len(statuses)}", "messages": [{parts}]}}'


CLASSIFY_CASES = (
    ("one-part", 200, sent("0"), "success", "0C000000"),
    ("two-parts", 200, sent("0", "0"), "success", "0C000000,0C000001"),
    ("throttled", 200, sent("1"), "retry", None),
    ("internal-error", 200, sent("0", "5"), "retry", None),
    ("invalid-credentials", 200, sent("4"), "permanent", None),
    ("barred", 200, sent("7"), "permanent", None),
    ("http-429", 429, "", "retry", None),
    ("http-500", 500, "", "retry", None),
    ("http-401", 401, "", "permanent", None),
)


@pytest.mark.parametrize(
    ("status", "body", "outcome", "ids"),
    [c[1:] for c in CLASSIFY_CASES],
    ids=[c[0] for c in CLASSIFY_CASES],
)
def test_classify(status: int, body: str, outcome: str, ids: str | None) -> None:
    result = vonage.classify(GatewayResponse(status, body))
    assert (result.outcome, result.gateway_message_id) == (outcome, ids)


def test_classify_names_the_failed_part() -> None:
    assert vonage.classify(GatewayResponse(200, sent("0", "7"))).detail == (
        "Vonage status 7: reason 7"
    )


INBOUND_CASES = (
    (
        "get",
        get(f"{INBOUND_URL}?" + "&".join(f"{k}={v}" for k, v in INBOUND.items()).replace(" ", "+")),
    ),
    ("post-form", form_post(INBOUND_URL, INBOUND)),
    ("post-json", json_post(INBOUND_URL, INBOUND)),
)


@pytest.mark.parametrize(
    "request_", [c[1] for c in INBOUND_CASES], ids=[c[0] for c in INBOUND_CASES]
)
def test_parse_inbound(request_: WebhookRequest) -> None:
    [sms] = vonage.parse_inbound(CONFIG, request_, REGION)
    assert (sms.sender, sms.recipient, sms.text, sms.keyword) == (
        "+447700900001",
        "447700900000",
        "Hello world",
        "HELLO",
    )
    assert sms.gateway_message_id == "0A0000000123ABCD1"
    assert sms.params == {"type": "text", "message-timestamp": "2020-01-01 12:00:00"}


STATUS_CASES = (
    ("delivered", "0", "delivered", "delivered"),
    ("accepted", "0", "accepted", "accepted"),
    ("buffered", "0", "accepted", "buffered"),
    ("expired", "0", "expired", "expired"),
    ("failed", "6", "failed", "failed (err-code 6)"),
    ("rejected", "2", "failed", "rejected (err-code 2)"),
    ("unknown", "0", "accepted", "unknown"),
)


@pytest.mark.parametrize(
    ("vonage_status", "error", "status", "detail"),
    STATUS_CASES,
    ids=[c[0] for c in STATUS_CASES],
)
def test_parse_status(vonage_status: str, error: str, status: str, detail: str) -> None:
    receipt = {**RECEIPT, "status": vonage_status, "err-code": error}
    [event] = vonage.parse_status(CONFIG, json_post(STATUS_URL, receipt))
    assert (event.outbound_id, event.adapter, event.status, event.detail) == (
        MESSAGE_ID,
        "bank",
        status,
        detail,
    )
    assert event.gateway_message_id == "0A0000001234567B"


def test_parse_status_needs_our_reference() -> None:
    receipt = {key: value for key, value in RECEIPT.items() if key != "client-ref"}
    with pytest.raises(InvalidWebhook, match="client-ref"):
        vonage.parse_status(CONFIG, json_post(STATUS_URL, receipt))


SIGNATURE_SECRET = "whsec"
SIGNED = {**INBOUND, "text": "a&b=c", "timestamp": "1582650446", "nonce": "ec11dd3e"}


def reference_sig(method: str, params: dict[str, str]) -> str:
    """Vonage's documented recipe, written out independently of the module."""
    text = ""
    for name in sorted(params):
        text += "&" + name + "=" + params[name].replace("&", "_").replace("=", "_")
    if method == "md5hash":
        return hashlib.md5((text + SIGNATURE_SECRET).encode()).hexdigest()
    return hmac.new(SIGNATURE_SECRET.encode(), text.encode(), getattr(hashlib, method)).hexdigest()


SIGNATURE_CASES = (
    ("md5hash-good", "md5hash", {**SIGNED, "sig": reference_sig("md5hash", SIGNED)}, True),
    (
        "sha256-good-uppercase",
        "sha256",
        {**SIGNED, "sig": reference_sig("sha256", SIGNED).upper()},
        True,
    ),
    ("sha512-good", "sha512", {**SIGNED, "sig": reference_sig("sha512", SIGNED)}, True),
    ("md5-hmac-good", "md5", {**SIGNED, "sig": reference_sig("md5", SIGNED)}, True),
    (
        "tampered",
        "md5hash",
        {**SIGNED, "text": "STOP", "sig": reference_sig("md5hash", SIGNED)},
        False,
    ),
    ("wrong-method", "sha256", {**SIGNED, "sig": reference_sig("sha1", SIGNED)}, False),
    ("missing", "md5hash", SIGNED, False),
)


@pytest.mark.parametrize(
    ("method", "fields", "valid"),
    [c[1:] for c in SIGNATURE_CASES],
    ids=[c[0] for c in SIGNATURE_CASES],
)
def test_check_signature(method: str, fields: dict[str, str], valid: bool) -> None:
    config = CONFIG.model_copy(update={"signature_method": method})
    keys = secrets("api-secret", signature_secret=SIGNATURE_SECRET)
    assert vonage.check_signature(config, form_post(INBOUND_URL, fields), keys) is valid
    assert vonage.check_signature(config, json_post(INBOUND_URL, fields), keys) is valid
