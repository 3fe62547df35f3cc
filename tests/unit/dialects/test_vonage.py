"""Vonage SMS API: send and its per-part statuses, inbound webhook and the parts of a long SMS,
delivery receipts, `sig` (checked against Vonage's own SDK)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from vonage_http_client import Auth  # type: ignore[import-untyped]

from tests.unit.dialects.helpers import (
    MESSAGE_ID,
    PUBLIC,
    REGION,
    form_post,
    gateway,
    get,
    json_post,
    outbound,
    reference,
    secrets,
)
from twoway.gateways import vonage
from twoway.gateways.base import GatewayRequest, GatewayResponse, InvalidWebhook, WebhookRequest
from twoway.gateways.encoding import segment
from twoway.gateways.parts import InvalidPart, MessagePart

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
    "client-ref": reference(CONFIG),
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
        "client-ref": reference(CONFIG),
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
        "+447700900000",  # the own number as configured, whatever the gateway's spelling
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
    [event] = vonage.parse_status(CONFIG, json_post(STATUS_URL, receipt), secrets())
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
        vonage.parse_status(CONFIG, json_post(STATUS_URL, receipt), secrets())


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


# The official Python SDK's signature check (`vonage.Auth` is `vonage_http_client.Auth`; the
# SDK's own "verify a signed SMS" sample calls `check_signature` on it) is the independent oracle
# for the HMAC methods. It has no plain `md5hash` (it would call `getattr(hashlib, None)`), which
# the written-out recipe above covers.
OFFICIAL_METHODS = ("md5", "sha1", "sha256", "sha512")


def official(method: str, secret: str = SIGNATURE_SECRET) -> Any:
    return Auth(api_key="abcd1234", signature_secret=secret, signature_method=method)


def official_sig(method: str, params: dict[str, str], secret: str = SIGNATURE_SECRET) -> str:
    return str(official(method, secret).sign_params(dict(params)))  # it adds a missing timestamp


SIGNED_PART = {**SIGNED, "concat": "true", "concat-ref": "08B5", "concat-total": "3"}
OTHER_METHOD = {"md5": "sha1", "sha1": "sha256", "sha256": "sha512", "sha512": "md5"}

ORACLE_CASES: tuple[tuple[str, Callable[[str], dict[str, str]], bool], ...] = (
    ("good", lambda method: {**SIGNED, "sig": official_sig(method, SIGNED)}, True),
    (
        "good-uppercase",
        lambda method: {**SIGNED, "sig": official_sig(method, SIGNED).upper()},
        True,
    ),
    (
        "good-concat-part",
        lambda method: {**SIGNED_PART, "sig": official_sig(method, SIGNED_PART)},
        True,
    ),
    (
        "tampered",
        lambda method: {**SIGNED, "text": "STOP", "sig": official_sig(method, SIGNED)},
        False,
    ),
    (
        "other-secret",
        lambda method: {**SIGNED, "sig": official_sig(method, SIGNED, secret="guess")},
        False,
    ),
    (
        "other-method",
        lambda method: {**SIGNED, "sig": official_sig(OTHER_METHOD[method], SIGNED)},
        False,
    ),
    ("missing", lambda method: dict(SIGNED), False),
    ("empty", lambda method: {**SIGNED, "sig": ""}, False),
)


@pytest.mark.parametrize("method", OFFICIAL_METHODS)
@pytest.mark.parametrize(
    ("fields", "valid"), [c[1:] for c in ORACLE_CASES], ids=[c[0] for c in ORACLE_CASES]
)
def test_check_signature_agrees_with_the_vonage_sdk(
    method: str, fields: Callable[[str], dict[str, str]], valid: bool
) -> None:
    post = fields(method)
    assert official(method).check_signature(dict(post)) is valid
    config = CONFIG.model_copy(update={"signature_method": method})
    keys = secrets("api-secret", signature_secret=SIGNATURE_SECRET)
    for request_ in (form_post(INBOUND_URL, post), json_post(INBOUND_URL, post)):
        assert vonage.check_signature(config, request_, keys) is valid


@pytest.mark.parametrize("method", OFFICIAL_METHODS)
def test_the_vonage_sdk_accepts_our_signature(method: str) -> None:
    ours = vonage.signature(SIGNATURE_SECRET, method, SIGNED_PART)
    assert official(method).check_signature({**SIGNED_PART, "sig": ours})


CONCAT = {"concat": "true", "concat-ref": "08B5", "concat-total": "3", "concat-part": "2"}
PART = {**INBOUND, **CONCAT}  # Vonage's documented inbound fields of a long SMS's part 2

PART_CASES = (
    ("get", get(f"{INBOUND_URL}?{urlencode(PART)}")),
    ("post-form", form_post(INBOUND_URL, PART)),
    ("post-json", json_post(INBOUND_URL, PART)),
    (
        "post-json-typed",
        json_post(INBOUND_URL, {**PART, "concat": True, "concat-total": 3, "concat-part": 2}),
    ),
)


@pytest.mark.parametrize("request_", [c[1] for c in PART_CASES], ids=[c[0] for c in PART_CASES])
def test_message_part(request_: WebhookRequest) -> None:
    assert vonage.message_part(CONFIG, request_) == MessagePart("08B5", 2, 3)
    [sms] = vonage.parse_inbound(CONFIG, request_, REGION)
    assert (sms.text, sms.gateway_message_id) == ("Hello world", "0A0000000123ABCD1")
    assert {key: sms.params[key] for key in CONCAT} == CONCAT


WHOLE_CASES = (
    ("no-concat", INBOUND),
    ("concat-false", {**INBOUND, "concat": "false"}),
    ("one-part", {**PART, "concat-total": "1", "concat-part": "1"}),
)


@pytest.mark.parametrize("fields", [c[1] for c in WHOLE_CASES], ids=[c[0] for c in WHOLE_CASES])
def test_message_part_of_a_whole_sms_is_none(fields: dict[str, str]) -> None:
    assert vonage.message_part(CONFIG, form_post(INBOUND_URL, fields)) is None


MALFORMED_PART_CASES = (
    ("part-above-total", {"concat-part": "4"}, "concat-part", "invalid_field"),
    ("part-zero", {"concat-part": "0"}, "concat-part", "invalid_field"),
    ("part-not-a-number", {"concat-part": "two"}, "concat-part", "invalid_field"),
    ("total-not-a-number", {"concat-total": "3a"}, "concat-total", "invalid_field"),
    ("total-negative", {"concat-total": "-3"}, "concat-total", "invalid_field"),
    ("total-above-255", {"concat-total": "256"}, "concat-total", "invalid_field"),
    ("part-missing", {"concat-part": ""}, "concat-part", "missing_field"),
    ("reference-missing", {"concat-ref": " "}, "concat-ref", "missing_field"),
    ("concat-not-a-boolean", {"concat": "yes"}, "concat", "invalid_field"),
)


@pytest.mark.parametrize(
    ("fields", "field", "code"),
    [c[1:] for c in MALFORMED_PART_CASES],
    ids=[c[0] for c in MALFORMED_PART_CASES],
)
def test_message_part_refuses(fields: dict[str, str], field: str, code: str) -> None:
    with pytest.raises(InvalidPart, match=field) as refused:
        vonage.message_part(CONFIG, json_post(INBOUND_URL, {**PART, **fields}))
    assert (refused.value.field, refused.value.code, refused.value.status) == (field, code, 422)
