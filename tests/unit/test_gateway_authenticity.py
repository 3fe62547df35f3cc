"""Inbound authenticity per gateway: source networks, shared token, dialect signature."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from tests.unit.dialects.helpers import form_post, gateway, secrets
from twoway.gateways import DIALECTS, kannel, twilio
from twoway.gateways.authenticity import check_configuration, refusal
from twoway.gateways.base import WebhookRequest

URL = "https://sms.example.com/gateways/g/inbound"
POST = replace(form_post(URL, {"From": "+15558675310", "Body": "hi"}), remote="10.1.2.3")


def with_basic(request: WebhookRequest, credentials: str) -> WebhookRequest:
    encoded = base64.b64encode(credentials.encode()).decode()
    return replace(request, headers={**request.headers, "authorization": f"Basic {encoded}"})


def with_token(
    request: WebhookRequest, *, header: str | None = None, query: str | None = None
) -> WebhookRequest:
    return replace(
        request,
        headers={**request.headers, **({"x-twoway-token": header} if header else {})},
        query=request.query + ((("token", query),) if query else ()),
    )


BASIC = {"basic_auth": {"username": "kannel", "password": "KANNEL_INBOUND_PASSWORD"}}
BASIC_REFUSED = "missing or wrong basic auth credentials"

CASES: tuple[tuple[Any, ...], ...] = (
    ("open", {"open": True}, POST, None),
    ("allowed-network", {"allow_from": ["10.0.0.0/8"]}, POST, None),
    ("other-network", {"allow_from": ["192.168.0.0/16"]}, POST, "source address not allowed"),
    ("ipv6-network", {"allow_from": ["2001:db8::/32"]}, replace(POST, remote="2001:db8::1"), None),
    (
        "no-address",
        {"allow_from": ["10.0.0.0/8"]},
        replace(POST, remote=""),
        "source address not allowed",
    ),
    ("token-header", {"token": "T"}, with_token(POST, header="tok"), None),
    ("token-query", {"token": "T"}, with_token(POST, query="tok"), None),
    ("token-wrong", {"token": "T"}, with_token(POST, query="nope"), "missing or wrong token"),
    ("token-missing", {"token": "T"}, POST, "missing or wrong token"),
    ("basic-good", BASIC, with_basic(POST, "kannel:pass"), None),
    ("basic-wrong-password", BASIC, with_basic(POST, "kannel:nope"), BASIC_REFUSED),
    ("basic-wrong-user", BASIC, with_basic(POST, "other:pass"), BASIC_REFUSED),
    ("basic-missing", BASIC, POST, BASIC_REFUSED),
    ("basic-no-colon", BASIC, with_basic(POST, "kannelpass"), BASIC_REFUSED),
    (
        "basic-not-base64",
        BASIC,
        replace(POST, headers={"authorization": "Basic %%%"}),
        BASIC_REFUSED,
    ),
    (
        "basic-bearer-instead",
        BASIC,
        replace(POST, headers={"authorization": "Bearer pass"}),
        BASIC_REFUSED,
    ),
    (
        "basic-and-network",
        {**BASIC, "allow_from": ["192.168.0.0/16"]},
        with_basic(POST, "kannel:pass"),
        "source address not allowed",
    ),
)


@pytest.mark.parametrize(
    ("inbound", "request_", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_refusal(inbound: dict[str, Any], request_: WebhookRequest, reason: str | None) -> None:
    config = gateway("kannel", account="u", secret="P", inbound=inbound)
    keys = secrets(
        inbound_token="tok" if "token" in inbound else None,
        inbound_password="pass" if "basic_auth" in inbound else None,
    )
    assert refusal(config, kannel, request_, keys) == reason


def test_twilio_signature_is_checked_by_default() -> None:
    config = gateway("twilio", account="AC1", secret="T")
    assert refusal(config, twilio, POST, secrets("tok")) == "missing or bad signature"
    signature = RequestValidator("tok").compute_signature(URL, dict(POST.form))
    signed = replace(POST, headers={"x-twilio-signature": signature})
    assert refusal(config, twilio, signed, secrets("tok")) is None
    unchecked = config.model_copy(
        update={"inbound": config.inbound.model_copy(update={"signature": False})}
    )
    assert refusal(unchecked, twilio, POST, secrets("tok")) is None


@pytest.mark.parametrize("type_", sorted(DIALECTS))
def test_signature_only_where_the_dialect_signs(type_: str) -> None:
    needs = {
        "kannel": ("account", "secret"),
        "twilio": ("account", "secret"),
        "vonage": ("account", "secret"),
        "infobip": ("secret",),
    }.get(type_, ())
    config = gateway(type_, inbound={"signature": True}, **{name: "X" for name in needs})
    if DIALECTS[type_].SIGNS:
        check_configuration(config, DIALECTS[type_])
    else:
        with pytest.raises(ValueError, match="do not sign"):
            check_configuration(config, DIALECTS[type_])


CONFIGURATIONS: tuple[tuple[str, str, dict[str, Any], str | None], ...] = (
    ("no-check", "kannel", {}, "checks nothing on its inbound posts"),
    ("open", "kannel", {"open": True}, None),
    ("token", "kannel", {"token": "T"}, None),
    ("basic", "kannel", BASIC, None),
    ("network", "kannel", {"allow_from": ["10.0.0.0/8"]}, None),
    ("twilio-signs-by-default", "twilio", {}, None),
    ("twilio-signature-off", "twilio", {"signature": False}, "checks nothing"),
    ("open-with-a-token", "kannel", {"open": True, "token": "T"}, "`open: true` with checks"),
    ("signature-kannel-cannot-do", "kannel", {"signature": True}, "do not sign webhooks"),
)


@pytest.mark.parametrize(
    ("type_", "inbound", "error"),
    [c[1:] for c in CONFIGURATIONS],
    ids=[c[0] for c in CONFIGURATIONS],
)
def test_a_gateway_checks_something_or_says_it_is_open(
    type_: str, inbound: dict[str, Any], error: str | None
) -> None:
    config = gateway(type_, account="AC1", secret="P", inbound=inbound)
    if error is None:
        check_configuration(config, DIALECTS[type_])
    else:
        with pytest.raises(ValueError, match=error):
            check_configuration(config, DIALECTS[type_])


def test_basic_auth_password_comes_from_the_environment() -> None:
    config = gateway("kannel", account="u", secret="P", inbound=BASIC)
    with pytest.raises(KeyError, match="KANNEL_INBOUND_PASSWORD"):
        config.secrets({"P": "x"}, reference_secret="r" * 16)
    given = config.secrets({"P": "x", "KANNEL_INBOUND_PASSWORD": "pw"}, reference_secret="r" * 16)
    assert given.inbound_password == "pw"
