"""The unmatched fallback: which rule applies to an SMS, and what a rule may say."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from twoway.messages import InboundSMS
from twoway_router.settings import RouterSettings, UnmatchedFallback
from twoway_router.unmatched import PARK, choose_fallback

ANY_GATEWAY = UnmatchedFallback(action="reply", text="any")
SIM = UnmatchedFallback(gateway_id="sim", action="reply", text="sim")
SHORT_CODE = UnmatchedFallback(recipient="67890", action="handler", adapter="desk", handler="inbox")
BOTH = UnmatchedFallback(gateway_id="sim", recipient="67890", action="none")
KANNEL = UnmatchedFallback(gateway_id="kannel", action="reply", text="kannel")


def sms(gateway_id: str = "sim", recipient: str = "12345") -> InboundSMS:
    return InboundSMS(gateway_id=gateway_id, sender="+14155552671", recipient=recipient, text="x")


FALLBACK_CASES = [
    pytest.param((), sms(), PARK, id="no-rules-park"),
    pytest.param((KANNEL,), sms(), PARK, id="no-matching-rule-park"),
    pytest.param((ANY_GATEWAY,), sms(), ANY_GATEWAY, id="catch-all-rule"),
    pytest.param((ANY_GATEWAY, SIM), sms(), SIM, id="gateway-beats-catch-all"),
    pytest.param(
        (SIM, SHORT_CODE), sms(recipient="67890"), SHORT_CODE, id="recipient-beats-gateway"
    ),
    pytest.param((SHORT_CODE, BOTH), sms(recipient="67890"), BOTH, id="both-beat-recipient"),
    pytest.param((SHORT_CODE, BOTH), sms("kannel", "67890"), SHORT_CODE, id="both-need-both"),
    pytest.param((SIM, KANNEL), sms("kannel"), KANNEL, id="other-gateway"),
    pytest.param(
        (ANY_GATEWAY, UnmatchedFallback(text="second", action="reply")),
        sms(),
        ANY_GATEWAY,
        id="first-of-equals",
    ),
]


@pytest.mark.parametrize(("rules", "message", "expected"), FALLBACK_CASES)
def test_choose_fallback(
    rules: tuple[UnmatchedFallback, ...], message: InboundSMS, expected: UnmatchedFallback
) -> None:
    assert choose_fallback(rules, message) == expected


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"action": "reply"}, "needs a text"),
        ({"action": "handler", "adapter": "desk"}, "needs an adapter and a handler"),
        ({"action": "handler", "handler": "inbox"}, "needs an adapter and a handler"),
        ({"action": "forward"}, "'none', 'reply' or 'handler'"),
        ({"action": "none", "surprise": 1}, "Extra inputs"),
    ],
    ids=[
        "reply-without-text",
        "handler-without-name",
        "handler-without-adapter",
        "unknown",
        "extra",
    ],
)
def test_an_incomplete_rule_is_refused(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        UnmatchedFallback(**fields)


def test_rules_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = [{"recipient": "67890", "action": "reply", "text": "Unknown keyword"}]
    monkeypatch.setenv("TWOWAY_UNMATCHED_FALLBACKS", json.dumps(rules))
    monkeypatch.setenv("TWOWAY_OPTOUT_KEYWORDS", '["ARRET"]')
    settings = RouterSettings()
    assert settings.unmatched_fallbacks == [
        UnmatchedFallback(recipient="67890", action="reply", text="Unknown keyword")
    ]
    assert settings.optout_keywords == ["ARRET"]
