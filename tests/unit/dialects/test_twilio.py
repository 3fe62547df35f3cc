"""Twilio: Messages API out, incoming-message webhook and status callbacks in, signatures checked
against Twilio's own `RequestValidator` (the independent oracle)."""

from __future__ import annotations

from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from tests.unit.dialects.helpers import (
    MESSAGE_ID,
    PUBLIC,
    REGION,
    form_post,
    gateway,
    outbound,
    ref_query,
    secrets,
)
from twoway.gateways import twilio
from twoway.gateways.base import GatewayRequest, GatewayResponse, WebhookRequest
from twoway.gateways.encoding import segment

ACCOUNT = "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
TOKEN = "12345"
CONFIG = gateway(
    "twilio", account=ACCOUNT, secret="TWILIO_AUTH_TOKEN", url="https://api.twilio.com"
)
CALLBACK = f"{PUBLIC}/gateways/twilio/status?{ref_query(CONFIG)}"

INBOUND = {  # Twilio's documented incoming-message webhook parameters
    "ToCountry": "US",
    "ToState": "CA",
    "SmsMessageSid": "SM1342fe1b2c904d1ab04f0fc7a58abca9",
    "NumMedia": "0",
    "ToCity": "SAN FRANCISCO",
    "FromZip": "94103",
    "SmsSid": "SM1342fe1b2c904d1ab04f0fc7a58abca9",
    "FromState": "CA",
    "SmsStatus": "received",
    "FromCity": "SAN FRANCISCO",
    "Body": "BAL please",
    "FromCountry": "US",
    "To": "+15017122661",
    "ToZip": "94105",
    "NumSegments": "1",
    "MessageSid": "SM1342fe1b2c904d1ab04f0fc7a58abca9",
    "AccountSid": ACCOUNT,
    "From": "+15558675310",
    "ApiVersion": "2010-04-01",
}


def status_post(status: str, **extra: str) -> WebhookRequest:
    fields = {
        "MessageSid": "SM5f7b1c2e8a1d4e0012c3b4a5",
        "MessageStatus": status,
        "SmsSid": "SM5f7b1c2e8a1d4e0012c3b4a5",
        "SmsStatus": status,
        "AccountSid": ACCOUNT,
        "From": "+15017122661",
        "To": "+15558675310",
        "ApiVersion": "2010-04-01",
        **extra,
    }
    return form_post(CALLBACK, fields)


BUILD_CASES: tuple[tuple[Any, ...], ...] = (
    (
        "number-sender-with-callback",
        {"public_url": PUBLIC},
        {"from": "+15017122661"},
        {
            "To": "+14155552671",
            "Body": "Your balance is 12.00",
            "From": "+15017122661",
            "StatusCallback": CALLBACK,
        },
    ),
    (
        "messaging-service-sender",
        {"default_sender": "MG9752274e9e519418a7406176694466fa"},
        {},
        {
            "To": "+14155552671",
            "Body": "Your balance is 12.00",
            "MessagingServiceSid": "MG9752274e9e519418a7406176694466fa",
        },
    ),
    ("no-sender-no-callback", {}, {}, {"To": "+14155552671", "Body": "Your balance is 12.00"}),
)


@pytest.mark.parametrize(
    ("config", "message", "form"), [c[1:] for c in BUILD_CASES], ids=[c[0] for c in BUILD_CASES]
)
def test_build_requests(
    config: dict[str, Any], message: dict[str, Any], form: dict[str, str]
) -> None:
    sms = outbound(**message)
    [request] = twilio.build_requests(
        CONFIG.model_copy(update=config), sms, segment(sms.text), secrets(TOKEN)
    )
    assert request == GatewayRequest(
        "POST",
        f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages.json",
        form=form,
        basic_auth=(ACCOUNT, TOKEN),
    )


CLASSIFY_CASES = (
    ("created", 201, '{"sid": "SM123", "status": "queued"}', None, "success", "SM123", "queued"),
    (
        "bad-number",
        400,
        '{"code": 21211, "message": "Invalid To", "status": 400}',
        None,
        "permanent",
        None,
        "Twilio error 21211: Invalid To",
    ),
    (
        "auth",
        401,
        '{"code": 20003, "message": "Authenticate", "status": 401}',
        None,
        "permanent",
        None,
        "20003",
    ),
    (
        "too-many",
        429,
        '{"code": 20429, "message": "Too Many Requests", "status": 429}',
        "3",
        "retry",
        None,
        "20429",
    ),
    ("server-error", 500, "oops", None, "retry", None, "HTTP 500: oops"),
)


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "outcome", "sid", "detail"),
    [c[1:] for c in CLASSIFY_CASES],
    ids=[c[0] for c in CLASSIFY_CASES],
)
def test_classify(
    status: int, body: str, retry_after: str | None, outcome: str, sid: str | None, detail: str
) -> None:
    headers = {"Retry-After": retry_after} if retry_after else {}
    result = twilio.classify(GatewayResponse(status, body, headers))
    assert (result.outcome, result.gateway_message_id) == (outcome, sid)
    assert detail in result.detail
    assert result.retry_after == (float(retry_after) if retry_after else None)


def test_parse_inbound() -> None:
    [sms] = twilio.parse_inbound(
        CONFIG, form_post(f"{PUBLIC}/gateways/twilio/inbound", INBOUND), REGION
    )
    assert (sms.sender, sms.recipient, sms.text, sms.keyword) == (
        "+15558675310",
        "+15017122661",
        "BAL please",
        "BAL",
    )
    assert sms.gateway_message_id == INBOUND["MessageSid"]
    assert sms.params["NumSegments"] == "1"
    assert "Body" not in sms.params


STATUS_CASES: tuple[tuple[Any, ...], ...] = (
    ("queued", {}, "accepted", "queued"),
    ("sent", {}, "sent", "sent"),
    ("delivered", {}, "delivered", "delivered"),
    ("read", {}, "delivered", "read"),
    ("undelivered", {"ErrorCode": "30003"}, "failed", "undelivered (error 30003)"),
    ("failed", {"ErrorCode": "30008"}, "failed", "failed (error 30008)"),
)


@pytest.mark.parametrize(
    ("twilio_status", "extra", "status", "detail"),
    [c for c in STATUS_CASES],
    ids=[c[0] for c in STATUS_CASES],
)
def test_parse_status(twilio_status: str, extra: dict[str, str], status: str, detail: str) -> None:
    [event] = twilio.parse_status(CONFIG, status_post(twilio_status, **extra), secrets())
    assert (event.outbound_id, event.adapter, event.status, event.detail) == (
        MESSAGE_ID,
        "bank",
        status,
        detail,
    )
    assert event.gateway_message_id == "SM5f7b1c2e8a1d4e0012c3b4a5"


def test_inbound_status_values_make_no_event() -> None:
    assert twilio.parse_status(CONFIG, status_post("received"), secrets()) == []


SIGNED_URLS = (
    ("https", f"{PUBLIC}/gateways/twilio/inbound"),
    ("https-default-port", "https://sms.example.com:443/gateways/twilio/inbound"),
    ("http-custom-port", "http://127.0.0.1:8080/gateways/twilio/inbound?token=x"),
    ("query-string", CALLBACK),
)


@pytest.mark.parametrize("url", [u for _, u in SIGNED_URLS], ids=[i for i, _ in SIGNED_URLS])
def test_signature_matches_twilios_validator(url: str) -> None:
    pairs = tuple(INBOUND.items())
    assert twilio.signature(TOKEN, url, pairs) == RequestValidator(TOKEN).compute_signature(
        url, INBOUND
    )


def signed(url: str, signed_as: str, token: str = TOKEN) -> WebhookRequest:
    signature = RequestValidator(token).compute_signature(signed_as, INBOUND)
    return form_post(url, INBOUND, {"X-Twilio-Signature": signature})


SIGNATURE_CASES = (
    ("good", signed(f"{PUBLIC}/in", f"{PUBLIC}/in"), True),
    ("signed-with-default-port", signed(f"{PUBLIC}/in", "https://sms.example.com:443/in"), True),
    ("received-with-default-port", signed("https://sms.example.com:443/in", f"{PUBLIC}/in"), True),
    ("other-url", signed(f"{PUBLIC}/in", f"{PUBLIC}/elsewhere"), False),
    ("http-vs-https", signed(f"{PUBLIC}/in", "http://sms.example.com/in"), False),
    ("wrong-token", signed(f"{PUBLIC}/in", f"{PUBLIC}/in", token="other"), False),
    (
        "tampered-body",
        form_post(
            f"{PUBLIC}/in",
            {**INBOUND, "Body": "STOP"},
            {
                "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(
                    f"{PUBLIC}/in", INBOUND
                )
            },
        ),
        False,
    ),
    ("missing", form_post(f"{PUBLIC}/in", INBOUND), False),
    ("empty", form_post(f"{PUBLIC}/in", INBOUND, {"X-Twilio-Signature": ""}), False),
)


@pytest.mark.parametrize(
    ("request_", "valid"), [c[1:] for c in SIGNATURE_CASES], ids=[c[0] for c in SIGNATURE_CASES]
)
def test_check_signature_agrees_with_twilio(request_: WebhookRequest, valid: bool) -> None:
    assert twilio.check_signature(CONFIG, request_, secrets(TOKEN)) is valid
    oracle = RequestValidator(TOKEN).validate(
        request_.url, dict(request_.form), request_.headers.get("x-twilio-signature", "")
    )
    assert oracle is valid


def test_no_auth_token_never_validates() -> None:
    request = signed(f"{PUBLIC}/in", f"{PUBLIC}/in")
    assert twilio.check_signature(CONFIG, request, secrets(None)) is False


def test_answers() -> None:
    inbound = twilio.answer("inbound")
    assert (inbound.status, inbound.content_type) == (200, "text/xml")
    assert inbound.body.endswith("<Response></Response>")
    assert twilio.answer("status").body == ""
