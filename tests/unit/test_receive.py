"""`/receiveSMS` parameters turned into an `InboundSMS`, and JSON bodies turned into parameters."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from twoway_ingress.errors import InvalidRequest
from twoway_ingress.receive import _json_fields, inbound_from_fields

PHONE = "+14155552671"


@dataclass(frozen=True)
class ValidCase:
    id: str
    fields: dict[str, str]
    sender: str
    recipient: str
    text: str
    keyword: str
    params: dict[str, str] = field(default_factory=dict)


VALID_CASES = (
    ValidCase("minimal", {"from": PHONE, "text": "hello"}, PHONE, "", "hello", "HELLO"),
    ValidCase(
        "with-to",
        {"from": PHONE, "to": " 12345 ", "text": "sub me"},
        PHONE,
        "12345",
        "sub me",
        "SUB",
    ),
    ValidCase("national-sender", {"from": "(415) 555-2671", "text": "x"}, PHONE, "", "x", "X"),
    ValidCase("padded-sender", {"from": "  +14155552671 ", "text": "x"}, PHONE, "", "x", "X"),
    ValidCase("empty-text-allowed", {"from": PHONE, "text": ""}, PHONE, "", "", ""),
    ValidCase("text-kept-verbatim", {"from": PHONE, "text": "  Hi  "}, PHONE, "", "  Hi  ", "HI"),
    ValidCase(
        "keyword-param-wins",
        {"from": PHONE, "text": "hello there", "keyword": " news "},
        PHONE,
        "",
        "hello there",
        "NEWS",
    ),
    ValidCase(
        "blank-keyword-param-derives",
        {"from": PHONE, "text": "join", "keyword": ""},
        PHONE,
        "",
        "join",
        "JOIN",
    ),
    ValidCase(
        "extra-params-kept",
        {"from": PHONE, "to": "12345", "text": "x", "keyword": "k", "smsc": "o2", "id": "g-1"},
        PHONE,
        "12345",
        "x",
        "K",
        {"smsc": "o2", "id": "g-1"},
    ),
)


@pytest.mark.parametrize("case", VALID_CASES, ids=[case.id for case in VALID_CASES])
def test_inbound_from_fields(case: ValidCase) -> None:
    message = inbound_from_fields(case.fields, "sim", "US")
    assert message.gateway_id == "sim"
    assert message.sender == case.sender
    assert message.recipient == case.recipient
    assert message.text == case.text
    assert message.keyword == case.keyword
    assert message.params == case.params


def test_national_sender_takes_the_default_region() -> None:
    message = inbound_from_fields({"from": "07700 900123", "text": "x"}, "uk", "GB")
    assert message.sender == "+447700900123"


@dataclass(frozen=True)
class RefusedCase:
    id: str
    fields: dict[str, str]
    code: str
    field: str


REFUSED_CASES = (
    RefusedCase("missing-from", {"text": "x"}, "missing_field", "from"),
    RefusedCase("empty-from", {"from": "", "text": "x"}, "missing_field", "from"),
    RefusedCase("blank-from", {"from": "   ", "text": "x"}, "missing_field", "from"),
    RefusedCase("missing-text", {"from": PHONE}, "missing_field", "text"),
    RefusedCase("missing-both-names-from-first", {}, "missing_field", "from"),
    RefusedCase("from-not-a-number", {"from": "hello", "text": "x"}, "invalid_field", "from"),
    RefusedCase("from-too-short", {"from": "123", "text": "x"}, "invalid_field", "from"),
)


@pytest.mark.parametrize("case", REFUSED_CASES, ids=[case.id for case in REFUSED_CASES])
def test_inbound_from_fields_refused(case: RefusedCase) -> None:
    with pytest.raises(InvalidRequest) as caught:
        inbound_from_fields(case.fields, "sim", "US")
    assert caught.value.status == 422
    assert caught.value.code == case.code
    assert caught.value.field == case.field
    assert str(caught.value)


JSON_CASES: tuple[tuple[str, bytes, dict[str, str]], ...] = (
    ("strings", b'{"from": "+1", "text": "hi"}', {"from": "+1", "text": "hi"}),
    ("int", b'{"id": 42}', {"id": "42"}),
    ("float", b'{"price": 1.5}', {"price": "1.5"}),
    ("true", b'{"flash": true}', {"flash": "true"}),
    ("false", b'{"flash": false}', {"flash": "false"}),
    ("null-skipped", b'{"to": null, "text": "x"}', {"text": "x"}),
    ("empty-object", b"{}", {}),
    ("utf8", '{"text": "héllo ✓"}'.encode(), {"text": "héllo ✓"}),
    ("utf16-detected", '{"text": "x"}'.encode("utf-16"), {"text": "x"}),
)


@pytest.mark.parametrize(
    ("body", "expected"), [case[1:] for case in JSON_CASES], ids=[case[0] for case in JSON_CASES]
)
def test_json_fields(body: bytes, expected: dict[str, str]) -> None:
    assert _json_fields(body) == expected


JSON_REFUSED = (
    ("array", b'[{"from": "+1"}]', 400, "invalid_json", None),
    ("string", b'"hello"', 400, "invalid_json", None),
    ("number", b"42", 400, "invalid_json", None),
    ("null", b"null", 400, "invalid_json", None),
    ("not-json", b"from=+1&text=hi", 400, "invalid_json", None),
    ("truncated", b'{"from": "+1"', 400, "invalid_json", None),
    ("empty-body", b"", 400, "invalid_json", None),
    ("bad-utf8", b'{"text": "\xff\xfe\xfa"}', 400, "invalid_json", None),
    ("nested-object", b'{"text": "x", "meta": {"a": 1}}', 422, "invalid_field", "meta"),
    ("nested-list", b'{"to": ["+1", "+2"], "text": "x"}', 422, "invalid_field", "to"),
)


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [case[1:] for case in JSON_REFUSED],
    ids=[case[0] for case in JSON_REFUSED],
)
def test_json_fields_refused(body: bytes, status: int, code: str, field: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _json_fields(body)
    assert (caught.value.status, caught.value.code, caught.value.field) == (status, code, field)
    if field is not None:
        assert field in str(caught.value)
