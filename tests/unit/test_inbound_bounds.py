"""Every MO is bounded and cleaned at the edge, whichever dialect parsed it: control characters
stripped (but newline and tab), text within the gateway's segments, short keyword, numbers and ids,
a bounded set of parameters, and nothing that is not Unicode text."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.dialects.helpers import gateway
from twoway.gateways.base import InvalidWebhook, WebhookRequest, inbound_message
from twoway.gateways.mobilefirst import parse_inbound

SENDER = "+447400123456"
CONFIG = gateway("webhook", max_segments=2)


def message(**fields: Any) -> Any:
    return inbound_message(CONFIG, "US", **{"sender": SENDER, "text": "hi", **fields})


CLEANED: tuple[tuple[str, dict[str, Any], str, Any], ...] = (
    ("text-controls-stripped", {"text": "EC\x00HO\x07 h\x1bi\x7f\x85"}, "text", "ECHO hi"),
    ("text-newline-and-tab-kept", {"text": "a\nb\tc"}, "text", "a\nb\tc"),
    ("text-crlf-to-newline", {"text": "a\r\nb"}, "text", "a\nb"),
    ("keyword-from-cleaned-text", {"text": "\x01bal now"}, "keyword", "BAL"),
    ("long-first-word-keyword-cut", {"text": "x" * 200}, "keyword", "X" * 32),
    ("param-controls-stripped", {"params": {"sm\x00sc": "o\x012"}}, "params", {"smsc": "o2"}),
    ("param-empty-name-dropped", {"params": {"\x00": "x", "a": "b"}}, "params", {"a": "b"}),
    ("recipient-controls-stripped", {"recipient": "123\x0045"}, "recipient", "12345"),
    (
        "numeric-gateway-id",
        {"gateway_message_id": 817790313235066447},
        "gateway_message_id",
        "817790313235066447",
    ),
)


@pytest.mark.parametrize(
    ("fields", "attribute", "expected"), [c[1:] for c in CLEANED], ids=[c[0] for c in CLEANED]
)
def test_cleaned(fields: dict[str, Any], attribute: str, expected: Any) -> None:
    config = gateway("webhook", own_numbers=["12345"])
    sms = inbound_message(config, "US", **{"sender": SENDER, "text": "hi", **fields})
    assert getattr(sms, attribute) == expected


REFUSED: tuple[tuple[str, dict[str, Any], str, str | None], ...] = (
    ("text-lone-surrogate", {"text": "hi \ud800"}, "invalid_text", "text"),
    ("text-over-the-characters", {"text": "x" * 321}, "too_long", "text"),
    ("text-over-the-segments", {"text": "中" * 200}, "too_long", "text"),
    ("keyword-too-long", {"keyword": "K" * 33}, "too_long", "keyword"),
    ("keyword-surrogate", {"keyword": "\udfff"}, "invalid_text", "keyword"),
    ("sender-too-long", {"sender": "1" * 40}, "invalid_field", "from"),
    ("sender-not-a-number", {"sender": "MyBank"}, "invalid_field", "from"),
    ("gateway-id-too-long", {"gateway_message_id": "i" * 129}, "too_long", "message id"),
    ("too-many-params", {"params": {f"p{n}": "v" for n in range(51)}}, "too_many_parameters", None),
    ("param-name-too-long", {"params": {"n" * 65: "v"}}, "too_long", "parameter name"),
    ("param-value-too-long", {"params": {"smsc": "v" * 1025}}, "too_long", "smsc"),
    ("param-value-surrogate", {"params": {"smsc": "\ud800"}}, "invalid_text", "smsc"),
)


@pytest.mark.parametrize(
    ("fields", "code", "field"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_refused(fields: dict[str, Any], code: str, field: str | None) -> None:
    with pytest.raises(InvalidWebhook) as refused:
        message(**fields)
    assert (refused.value.code, refused.value.field) == (code, field)


def test_a_text_of_a_few_segments_is_taken() -> None:
    assert message(text="x" * 300).text == "x" * 300


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"from": "+447400123456", "text": "\\ud800"}', "application/json", 422, "invalid_text"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "invalid_json"),
        (b'["a list"]', "application/json", 400, "invalid_json"),
        (b"<sms/>", "application/xml", 415, "unsupported_media_type"),
    ],
    ids=["lone-surrogate", "nested-deep", "not-an-object", "xml"],
)
def test_mobilefirst_bodies_refused(body: bytes, content_type: str, status: int, code: str) -> None:
    post = WebhookRequest("POST", "https://x/receiveSMS", {}, body=body, content_type=content_type)
    with pytest.raises(InvalidWebhook) as refused:
        parse_inbound(gateway("mobilefirst-http"), post, "US")
    assert (refused.value.status, refused.value.code) == (status, code)


def test_mobilefirst_json_values_read_as_text() -> None:
    body = (
        b'{"from": "+447400123456", "text": "hi", "flag": true, "n": 2, "o": {"a": 1}, "x": null}'
    )
    post = WebhookRequest(
        "POST", "https://x/receiveSMS", {}, body=body, content_type="application/json"
    )
    [sms] = parse_inbound(gateway("mobilefirst-http"), post, "US")
    assert sms.params == {"flag": "true", "n": "2", "o": '{"a":1}'}
