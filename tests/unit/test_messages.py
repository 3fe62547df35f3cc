"""The message contracts: keyword derivation, `reply()`, strictness and the JSON wire form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from ulid import ULID

from twoway.messages import (
    ANY_MESSAGE,
    DeliveryEvent,
    HandlerRegistration,
    HandlersChanged,
    InboundSMS,
    OutboundSMS,
    derive_keyword,
    derive_message_id,
)

AT = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)


def inbound(**overrides: Any) -> InboundSMS:
    fields: dict[str, Any] = {
        "gateway_id": "sim",
        "sender": "+14155552671",
        "recipient": "12345",
        "text": "hello",
    }
    fields.update(overrides)
    return InboundSMS(**fields)


@dataclass(frozen=True)
class KeywordCase:
    id: str
    text: str
    given: str | None
    expected: str


KEYWORD_CASES = (
    KeywordCase("first-word-upper-cased", "sub me please", None, "SUB"),
    KeywordCase("single-word", "stop", None, "STOP"),
    KeywordCase("leading-whitespace", "  \tjoin  news", None, "JOIN"),
    KeywordCase("empty-text", "", None, ""),
    KeywordCase("whitespace-only-text", "   ", None, ""),
    KeywordCase("gateway-keyword-wins", "hello world", "news", "NEWS"),
    KeywordCase("gateway-keyword-stripped", "hello", "  news \n", "NEWS"),
    KeywordCase("blank-gateway-keyword-derives", "sub me", "   ", "SUB"),
    KeywordCase("empty-gateway-keyword-derives", "sub me", "", "SUB"),
)


@pytest.mark.parametrize("case", KEYWORD_CASES, ids=[case.id for case in KEYWORD_CASES])
def test_keyword(case: KeywordCase) -> None:
    extra = {} if case.given is None else {"keyword": case.given}
    message = inbound(text=case.text, **extra)
    assert message.keyword == case.expected
    assert message.text == case.text


@pytest.mark.parametrize(
    ("text", "expected"),
    [("sub me", "SUB"), ("", ""), ("  x", "X"), ("ñu y", "ÑU")],
    ids=["words", "empty", "leading-space", "non-ascii"],
)
def test_derive_keyword(text: str, expected: str) -> None:
    assert derive_keyword(text) == expected


def test_reply_builds_from_explicit_fields() -> None:
    original = inbound(
        gateway_id="kannel",
        recipient="12345",
        correlation_id=None,
        trace={"traceparent": "00-abc-def-01"},
    )
    reply = original.reply("thanks", message_id="01JH5Z8K3QW7N2M4P6R8T0V2X5", adapter="echo")
    assert isinstance(reply, OutboundSMS)
    assert reply.to == original.sender
    assert reply.from_ == "12345"
    assert reply.text == "thanks"
    assert reply.gateway_id == "kannel"
    assert reply.in_reply_to == original.message_id
    assert reply.correlation_id == original.message_id
    assert reply.adapter == "echo"
    assert reply.priority == "reply"
    assert reply.trace == {"traceparent": "00-abc-def-01"}
    assert reply.message_id == "01JH5Z8K3QW7N2M4P6R8T0V2X5"


def test_reply_without_recipient_leaves_from_to_the_gateway() -> None:
    reply = inbound(recipient="").reply("hi", message_id="r")
    assert reply.from_ is None
    assert reply.adapter is None


def test_reply_keeps_the_correlation_chain() -> None:
    original = inbound(correlation_id="01JH5Z8K3QW7N2M4P6R8T0V2X4")
    assert original.reply("hi", message_id="r").correlation_id == "01JH5Z8K3QW7N2M4P6R8T0V2X4"


PARENT = "01JH5Z8K3QW7N2M4P6R8T0V2X4"


def test_a_derived_id_is_the_same_each_time_and_a_ulid_in_the_parents_millisecond() -> None:
    derived = derive_message_id(PARENT, "echo", "echo", "1")
    assert derive_message_id(PARENT, "echo", "echo", "1") == derived
    assert ULID.from_str(derived).timestamp == ULID.from_str(PARENT).timestamp
    assert str(ULID.from_str(derived)) == derived
    assert derived != PARENT


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ((PARENT, "echo", "echo", "1"), (PARENT, "echo", "echo", "2")),
        ((PARENT, "echo", "echo", "1"), ("01JH5Z8K3QW7N2M4P6R8T0V2X5", "echo", "echo", "1")),
        ((PARENT, "echo", "a", "1"), (PARENT, "bank", "a", "1")),
        ((PARENT, "echo", "a:b", "1"), (PARENT, "echo", "a", "b:1")),
        ((PARENT, "echo", "a\\", "1"), (PARENT, "echo", "a\\:1")),
        ((PARENT, "echo", "echo", "1"), (PARENT, "echo", "echo", "failure_reply", "1")),
    ],
    ids=["sequence", "parent", "adapter", "colon-in-a-part", "backslash-in-a-part", "scope-depth"],
)
def test_different_scopes_derive_different_ids(
    one: tuple[str, ...], other: tuple[str, ...]
) -> None:
    assert derive_message_id(*one) != derive_message_id(*other)


@pytest.mark.parametrize("parent", ["m1", "", "not-a-ulid-but-twenty-six!", "a" * 300])
def test_a_parent_that_is_no_ulid_still_derives_a_stable_ulid(parent: str) -> None:
    derived = derive_message_id(parent, "router", "help")
    assert derive_message_id(parent, "router", "help") == derived
    assert str(ULID.from_str(derived)) == derived


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (InboundSMS, {"gateway_id": "sim", "sender": "+1", "text": "x"}),
        (OutboundSMS, {"to": "+14155552671", "text": "x"}),
        (DeliveryEvent, {"outbound_id": "m1", "status": "sent"}),
        (HandlersChanged, {"adapter": "echo"}),
        (HandlerRegistration, {"adapter": "echo", "handler": "h"}),
    ],
    ids=["inbound", "outbound", "delivery", "handlers-changed", "registration"],
)
def test_unknown_field_rejected(model: type[Any], fields: dict[str, Any]) -> None:
    model(**fields)  # the base fields are valid on their own
    with pytest.raises(ValidationError) as caught:
        model(**fields, surprise="!")
    assert [(error["loc"], error["type"]) for error in caught.value.errors()] == [
        (("surprise",), "extra_forbidden")
    ]


def test_models_are_frozen() -> None:
    message = inbound()
    with pytest.raises(ValidationError, match="frozen"):
        message.text = "changed"  # type: ignore[misc]
    registration = HandlerRegistration(adapter="echo", handler="h")
    with pytest.raises(ValidationError, match="frozen"):
        registration.priority = 5  # type: ignore[misc]


def test_outbound_json_uses_the_from_alias_and_parses_back() -> None:
    message = OutboundSMS(
        to="+14155552671", from_="12345", text="hi", gateway_id="sim", not_after=AT
    )
    wire = message.model_dump_json()
    assert '"from":"12345"' in wire
    assert "from_" not in wire
    parsed = OutboundSMS.model_validate_json(wire)
    assert parsed == message
    assert parsed.from_ == "12345"


def test_outbound_accepts_from_by_alias_and_by_name() -> None:
    by_alias = OutboundSMS.model_validate({"to": "+1", "from": "999", "text": "x"})
    by_name = OutboundSMS.model_validate({"to": "+1", "from_": "999", "text": "x"})
    assert by_alias.from_ == by_name.from_ == "999"


def test_inbound_json_round_trip_keeps_every_field() -> None:
    message = inbound(text="sub me", params={"smsc": "a"}, gateway_message_id="g1", received_at=AT)
    parsed = InboundSMS.model_validate_json(message.model_dump_json())
    assert parsed == message
    assert parsed.keyword == "SUB"


MESSAGES = (
    inbound(),
    OutboundSMS(to="+14155552671", from_="12345", text="hi"),
    DeliveryEvent(outbound_id="m1", status="delivered", at=AT),
    HandlersChanged(adapter="echo"),
)


@pytest.mark.parametrize(
    "message", MESSAGES, ids=["inbound", "outbound", "delivery", "handlers-changed"]
)
def test_any_message_discriminator_picks_the_model(
    message: InboundSMS | OutboundSMS | DeliveryEvent | HandlersChanged,
) -> None:
    parsed = ANY_MESSAGE.validate_json(message.model_dump_json())
    assert type(parsed) is type(message)
    assert parsed == message


def test_any_message_rejects_an_unknown_type() -> None:
    with pytest.raises(ValidationError) as caught:
        ANY_MESSAGE.validate_python({"type": "carrier_pigeon", "adapter": "x"})
    assert [error["type"] for error in caught.value.errors()] == ["union_tag_invalid"]


@pytest.mark.parametrize("version", [0, 2, "2"], ids=["zero", "two", "string-two"])
def test_version_must_be_1(version: object) -> None:
    with pytest.raises(ValidationError) as caught:
        OutboundSMS.model_validate({"v": version, "to": "+1", "text": "x"})
    assert [error["loc"] for error in caught.value.errors()] == [("v",)]
    assert OutboundSMS(to="+1", text="x").v == 1


@pytest.mark.parametrize(
    ("adapter", "valid"),
    [
        ("echo", True),
        ("my-adapter_2.v1", True),
        ("", False),
        ("has space", False),
        ("slash/name", False),
        ("ünïcode", False),
    ],
    ids=["plain", "punctuation-allowed", "empty", "space", "slash", "non-ascii"],
)
def test_handler_registration_adapter_name(adapter: str, valid: bool) -> None:
    if valid:
        assert HandlerRegistration(adapter=adapter, handler="h").adapter == adapter
    else:
        with pytest.raises(ValidationError) as caught:
            HandlerRegistration(adapter=adapter, handler="h")
        assert [error["loc"] for error in caught.value.errors()] == [("adapter",)]


def test_naive_datetimes_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        OutboundSMS(to="+1", text="x", created_at=datetime(2026, 1, 1))
    assert [error["loc"] for error in caught.value.errors()] == [("created_at",)]
