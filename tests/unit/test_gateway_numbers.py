"""Numbers as real gateways send them, with a default region (US) unlike the senders' countries.

Kannel's SMSCs, Vonage and Infobip write international numbers without `+`; Twilio writes E.164;
an operator's HTTP API may write national numbers. Each case is a vendor's documented MO shape
with a sender from another country; replies go back in the gateway's own spelling."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.dialects.helpers import form_post, gateway, get, json_post, outbound, secrets
from twoway.gateways import DIALECTS
from twoway.gateways.base import InvalidWebhook, WebhookRequest
from twoway.gateways.encoding import prepare
from twoway.phone import InvalidPhoneNumber, format_for_gateway, parse_gateway_number

REGION = "US"
INBOUND = "https://sms.example.com/gateways/g/inbound"

SENDERS = {
    "GB": ("447911123456", "+447911123456"),
    "DE": ("4915123456789", "+4915123456789"),
    "FR": ("33612345678", "+33612345678"),
    "IN": ("919876543210", "+919876543210"),
    "AU": ("61412345678", "+61412345678"),
    "NG": ("2348031234567", "+2348031234567"),
    "BR": ("5511987654321", "+5511987654321"),
}


def kannel_post(sender: str) -> WebhookRequest:
    return form_post(f"{INBOUND}?from={sender}&to=12345", {"text": "BAL"})


def vonage_get(sender: str) -> WebhookRequest:
    return get(f"{INBOUND}?msisdn={sender}&to=447700900000&messageId=0A1&text=BAL&type=text")


def infobip_post(sender: str) -> WebhookRequest:
    document = {
        "results": [{"messageId": "1", "from": sender, "to": "385921004026", "text": "BAL"}]
    }
    return json_post(INBOUND, document)


def twilio_post(sender: str) -> WebhookRequest:
    return form_post(INBOUND, {"From": sender, "To": "+15017122661", "Body": "BAL"})


def webhook_post(sender: str) -> WebhookRequest:
    return json_post(INBOUND, {"from": sender, "to": "12345", "text": "BAL"})


def mobilefirst_get(sender: str) -> WebhookRequest:
    return get(f"{INBOUND}?from={sender}&to=12345&text=BAL")


DIALECT_POSTS: dict[str, tuple[Any, dict[str, Any], bool]] = {
    # type: (post builder, extra config, whether the vendor writes the `+`)
    "kannel": (kannel_post, {"account": "u", "secret": "P"}, False),
    "vonage": (vonage_get, {"account": "k", "secret": "S"}, False),
    "infobip": (infobip_post, {"secret": "K"}, False),
    "twilio": (twilio_post, {"account": "AC1", "secret": "T"}, True),
    "webhook": (webhook_post, {}, False),
    "mobilefirst-http": (mobilefirst_get, {}, False),
}


@pytest.mark.parametrize("country", sorted(SENDERS))
@pytest.mark.parametrize("type_", sorted(DIALECT_POSTS))
def test_each_dialect_reads_senders_of_other_countries(type_: str, country: str) -> None:
    build, config, plus = DIALECT_POSTS[type_]
    written, e164 = SENDERS[country]
    sender = "+" + written if plus else written
    [sms] = DIALECTS[type_].parse_inbound(gateway(type_, **config), build(sender), REGION)
    assert sms.sender == e164


@pytest.mark.parametrize(
    ("type_", "expected"),
    [
        ("kannel", "+447911123456"),
        ("vonage", "447911123456"),
        ("infobip", "447911123456"),
        ("twilio", "+447911123456"),
        ("webhook", "+447911123456"),
        ("mobilefirst-http", "+447911123456"),
    ],
)
def test_replies_go_back_in_the_gateways_spelling(type_: str, expected: str) -> None:
    _, config, _ = DIALECT_POSTS[type_]
    message = outbound(to="+447911123456")
    [request] = DIALECTS[type_].build_requests(
        gateway(type_, **config), message, prepare(message.text, transliteration=False), secrets()
    )
    sent = {**request.params, **(request.form or {}), **_json_fields(request.json)}
    assert expected in sent.values()


def _json_fields(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict):
        return {}
    destinations = document.get("messages", [{}])[0].get("destinations", [{}])
    return {**document, **(destinations[0] if destinations else {})}


def test_a_national_gateway_reads_and_writes_national_numbers() -> None:
    config = gateway("mobilefirst-http", number_format="national", region="GB")
    [sms] = DIALECTS["mobilefirst-http"].parse_inbound(
        config, get(f"{INBOUND}?from=07911123456&to=12345&text=hi"), REGION
    )
    assert sms.sender == "+447911123456"
    message = outbound(to="+447911123456", from_="+447700900000")
    [request] = DIALECTS["mobilefirst-http"].build_requests(
        config, message, prepare("hi", transliteration=False), secrets()
    )
    assert (request.params["to"], request.params["from"]) == ("07911123456", "07700900000")


def test_a_national_gateway_needs_its_region() -> None:
    with pytest.raises(ValueError, match="region"):
        gateway("mobilefirst-http", number_format="national")


PARSED: tuple[tuple[str, str, str, str], ...] = (
    # id, raw, format, E.164 (region US)
    ("auto-plus", "+447911123456", "auto", "+447911123456"),
    ("auto-00-prefix", "00447911123456", "auto", "+447911123456"),
    ("auto-national-us", "(415) 555-2671", "auto", "+14155552671"),
    ("auto-us-with-1", "14155552671", "auto", "+14155552671"),
    ("auto-international-gb", "447911123456", "auto", "+447911123456"),
    ("auto-international-in", "919876543210", "auto", "+919876543210"),
    ("auto-reserved-range", "447700900123", "auto", "+447700900123"),
    ("auto-plus-as-space", " 447911123456", "auto", "+447911123456"),
    ("e164", "+4915123456789", "e164", "+4915123456789"),
    ("international", "33612345678", "international", "+33612345678"),
    ("international-with-plus", "+33612345678", "international", "+33612345678"),
)


@pytest.mark.parametrize(
    ("raw", "number_format", "expected"), [c[1:] for c in PARSED], ids=[c[0] for c in PARSED]
)
def test_parse_gateway_number(raw: str, number_format: Any, expected: str) -> None:
    assert parse_gateway_number(raw, number_format, REGION) == expected


REFUSED: tuple[tuple[str, str, str], ...] = (
    ("letters", "not a number", "auto"),
    ("too-short", "123", "auto"),
    ("e164-without-plus", "447911123456", "e164"),
    ("too-long", "1" * 33, "auto"),
    ("international-too-short", "44", "international"),
)


@pytest.mark.parametrize(
    ("raw", "number_format"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_parse_gateway_number_refuses(raw: str, number_format: Any) -> None:
    with pytest.raises(InvalidPhoneNumber):
        parse_gateway_number(raw, number_format, REGION)


@pytest.mark.parametrize(
    ("number", "number_format", "expected"),
    [
        ("+447911123456", "e164", "+447911123456"),
        ("+447911123456", "auto", "+447911123456"),
        ("+447911123456", "international", "447911123456"),
        ("+447911123456", "national", "07911123456"),
        ("+14155552671", "national", "+14155552671"),  # not the gateway's country: as it is
        ("12345", "international", "12345"),  # a short code
        ("MyBank", "international", "MyBank"),  # a sender id
    ],
)
def test_format_for_gateway(number: str, number_format: Any, expected: str) -> None:
    assert format_for_gateway(number, number_format, "GB") == expected


OWNED: tuple[tuple[str, str, str | None], ...] = (
    ("short-code", "12345", "12345"),
    ("default-sender", "67890", "67890"),
    ("number-as-configured", "+447700900000", "+447700900000"),
    ("number-without-plus", "447700900000", "+447700900000"),
    ("number-with-00", "00447700900000", "+447700900000"),
    ("sender-id", "MyBank", "MyBank"),
    ("short-code-with-suffix", "12345x", None),
    ("other-short-code", "54321", None),
    ("other-number", "+447700900001", None),
    ("sender-id-other-case", "MYBANK", None),
)


@pytest.mark.parametrize(("to", "expected"), [c[1:] for c in OWNED], ids=[c[0] for c in OWNED])
def test_an_mo_must_be_sent_to_one_of_our_numbers(to: str, expected: str | None) -> None:
    config = gateway(
        "webhook", own_numbers=["12345", "+447700900000", "MyBank"], default_sender="67890"
    )
    assert config.owned(to, REGION) == expected
    post = json_post(INBOUND, {"from": "+447911123456", "to": to, "text": "hi"})
    if expected is None:
        with pytest.raises(InvalidWebhook) as refused:
            DIALECTS["webhook"].parse_inbound(config, post, REGION)
        assert (refused.value.code, refused.value.field) == ("unknown_recipient", "to")
    else:
        [sms] = DIALECTS["webhook"].parse_inbound(config, post, REGION)
        assert sms.recipient == expected
