"""Which SMS are compliance keywords (STOP / START / HELP), by the router's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from twoway.messages import InboundSMS
from twoway_router.compliance import ComplianceAction, ComplianceKeywords
from twoway_router.settings import RouterSettings


@dataclass(frozen=True)
class KeywordCase:
    id: str
    text: str
    expected: ComplianceAction | None
    settings: dict[str, Any] = field(default_factory=dict)
    keyword: str = ""


KEYWORD_CASES = (
    KeywordCase("stop", "STOP", "opt_out"),
    KeywordCase("stop-lower-case", "stop", "opt_out"),
    KeywordCase("stop-padded-with-punctuation", "  Stop!! ", "opt_out"),
    KeywordCase("stopall", "STOPALL", "opt_out"),
    KeywordCase("unsubscribe", "unsubscribe", "opt_out"),
    KeywordCase("cancel", "Cancel.", "opt_out"),
    KeywordCase("end", "END", "opt_out"),
    KeywordCase("quit", "quit", "opt_out"),
    KeywordCase("start", "START", "opt_in"),
    KeywordCase("unstop", "unstop", "opt_in"),
    KeywordCase("yes", "Yes", "opt_in"),
    KeywordCase("help", "HELP", "help"),
    KeywordCase("info", "info?", "help"),
    KeywordCase("cancel-with-words-reaches-adapters", "CANCEL 42", None),
    KeywordCase("stop-inside-a-sentence", "please stop", None),
    KeywordCase("stopping-is-not-stop", "STOPPING", None),
    KeywordCase("ordinary-sms", "ECHO hi", None),
    KeywordCase("empty", "", None),
    KeywordCase("first-word-mode", "stop it now", "opt_out", {"compliance_match": "first_word"}),
    KeywordCase(
        "first-word-mode-punctuation", "Stop, please", "opt_out", {"compliance_match": "first_word"}
    ),
    KeywordCase(
        "first-word-mode-gateway-keyword",
        "whatever",
        "help",
        {"compliance_match": "first_word"},
        keyword="help",
    ),
    KeywordCase("custom-list", "ARRET", "opt_out", {"optout_keywords": ["arret", "STOP"]}),
    KeywordCase("custom-list-replaces-default", "QUIT", None, {"optout_keywords": ["ARRET"]}),
    KeywordCase("help-word-taken-out", "INFO", None, {"help_keywords": ["HELP"]}),
)


@pytest.mark.parametrize("case", KEYWORD_CASES, ids=[case.id for case in KEYWORD_CASES])
def test_compliance_keyword(case: KeywordCase) -> None:
    keywords = ComplianceKeywords.from_settings(RouterSettings(**case.settings))
    message = InboundSMS(
        gateway_id="sim", sender="+14155552671", text=case.text, keyword=case.keyword
    )
    assert keywords.action(message) == case.expected
