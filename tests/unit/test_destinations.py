"""Who a gateway may text: the destination policy's rules, and its configuration."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from twoway.gateways.config import load_gateways
from twoway.gateways.destinations import DestinationPolicy, RecipientLimit, refusal

REPOSITORY = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    id: str
    number: str
    refused: str | None
    policy: dict[str, Any] | None = None
    """None: the default policy."""
    region: str = "US"
    """The default region (numbers without a country code)."""


DEFAULT_POLICY = (
    Case("us-mobile-or-fixed", "+14155552671", None),
    Case("us-toll-free", "+18005550100", None),
    Case("guernsey-mobile", "+447911123456", None),
    Case("uk-mobile", "+447400123456", None),
    Case("germany-mobile", "+4915123456789", None),
    Case("germany-fixed", "+4930123456", None),
    Case("france-mobile", "+33612345678", None),
    Case("india-mobile", "+919876543210", None),
    Case("brazil-mobile", "+5511987654321", None),
    Case("japan-fixed", "+81312345678", None),
    Case("croatia-mobile", "+385921004026", None),
    Case("canada", "+16135550123", None),
    Case("us-premium-rate", "+19005550100", "premium_rate"),
    Case("uk-premium-rate", "+449098765432", "premium_rate"),
    Case("uk-premium-rate-0901", "+449012345678", "premium_rate"),
    Case("france-premium-rate", "+33891234567", "premium_rate"),
    Case("australia-shared-cost", "+611300123456", "shared_cost"),
    Case("uk-personal-number", "+447012345678", "personal_number"),
    Case("us-fictitious-555", "+15551234567", "unknown"),
    Case("uk-drama-range", "+447700900123", "unknown"),
    Case("calling-code-only", "+1", "invalid"),
    Case("too-short", "+12", "invalid"),
    Case("no-such-calling-code", "+999123456789", "invalid"),
    Case("not-a-number", "not a number", "invalid"),
    Case("empty", "", "invalid"),
)

DEFAULT_REGION = (
    Case("e164-unaffected-by-region-gb", "+19005550100", "premium_rate", region="GB"),
    Case("e164-unaffected-by-region-de", "+14155552671", None, region="DE"),
    Case("guernsey-from-region-jp", "+447911123456", None, region="JP"),
    Case("national-premium-read-as-us", "9005550100", "premium_rate"),
    Case("national-uk-mobile-read-as-us", "07400123456", "invalid"),
    Case("national-uk-mobile-read-as-gb", "07400123456", None, region="GB"),
    Case("lower-case-region", "07400123456", None, region="gb"),
)

ALLOWED_LISTS = (
    Case("region-hit", "+14155552671", None, {"countries": ["US"]}),
    Case("region-miss-canada", "+16135550123", "country", {"countries": ["US"]}),
    Case("region-miss-uk", "+447400123456", "country", {"countries": ["US"]}),
    Case("gb-is-not-guernsey", "+447911123456", "country", {"countries": ["GB"]}),
    Case("calling-code-covers-guernsey", "+447911123456", None, {"countries": ["+44"]}),
    Case("calling-code-covers-canada", "+16135550123", None, {"countries": ["+1"]}),
    Case("several-hit", "+4915123456789", None, {"countries": ["GB", "DE", "+385"]}),
    Case("several-miss", "+33612345678", "country", {"countries": ["GB", "DE", "+385"]}),
    Case("country-before-type", "+19005550100", "country", {"countries": ["GB"]}),
    Case("premium-in-allowed-country", "+19005550100", "premium_rate", {"countries": ["US"]}),
    Case("invalid-before-country", "+1", "invalid", {"countries": ["US"]}),
    Case("mobile-only-hit", "+33612345678", None, {"number_types": ["mobile"]}),
    Case("mobile-only-miss", "+4930123456", "fixed_line", {"number_types": ["mobile"]}),
    Case(
        "unknown-allowed",
        "+15551234567",
        None,
        {"number_types": ["fixed_line_or_mobile", "unknown"]},
    ),
    Case(
        "unknown-allowed-by-plus-one",
        "+15551234567",
        None,
        {"countries": ["+1"], "number_types": ["unknown"]},
    ),
    Case(
        "unknown-has-no-region",
        "+15551234567",
        "country",
        {"countries": ["US"], "number_types": ["unknown"]},
    ),
    Case("unknown-allowed-invalid-still-refused", "+12", "invalid", {"number_types": ["unknown"]}),
    Case("premium-allowed-explicitly", "+449098765432", None, {"number_types": ["premium_rate"]}),
)


@pytest.mark.parametrize(
    "case",
    DEFAULT_POLICY + DEFAULT_REGION + ALLOWED_LISTS,
    ids=[case.id for case in DEFAULT_POLICY + DEFAULT_REGION + ALLOWED_LISTS],
)
def test_refusal(case: Case) -> None:
    policy = DestinationPolicy.model_validate(case.policy or {})
    assert refusal(policy, case.number, case.region) == case.refused


BAD_POLICIES: tuple[tuple[str, dict[str, list[str]], str], ...] = (
    ("unknown-region", {"countries": ["XX"]}, "XX"),
    ("lower-case-region", {"countries": ["us"]}, "us"),
    ("calling-code-without-plus", {"countries": ["44"]}, "44"),
    ("no-such-calling-code", {"countries": ["+999"]}, "+999"),
    ("unknown-number-type", {"number_types": ["premium"]}, "number_types"),
    ("no-number-type", {"number_types": []}, "number_types"),
    ("unknown-field", {"allow": ["US"]}, "allow"),
)


@pytest.mark.parametrize(
    ("fields", "mentions"),
    [case[1:] for case in BAD_POLICIES],
    ids=[case[0] for case in BAD_POLICIES],
)
def test_bad_policy_rejected(fields: dict[str, Any], mentions: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DestinationPolicy.model_validate(fields)
    assert mentions in str(caught.value)


def test_gateway_configuration(tmp_path: Path) -> None:
    path = tmp_path / "gateways.yaml"
    path.write_text(
        textwrap.dedent(
            """
            default_gateway: strict
            gateways:
              - id: strict
                type: mobilefirst-http
                url: http://127.0.0.1:1/
              - id: chosen
                type: mobilefirst-http
                url: http://127.0.0.1:1/
                destinations: {countries: [US, "+44"], number_types: [mobile]}
                recipient_limit: {count: 3, seconds: 10}
              - id: uncapped
                type: mobilefirst-http
                url: http://127.0.0.1:1/
                recipient_limit: null
            """
        )
    )
    strict, chosen, uncapped = load_gateways(path).gateways
    assert strict.destinations == DestinationPolicy()
    assert "premium_rate" not in strict.destinations.number_types
    assert strict.recipient_limit == RecipientLimit(count=10, seconds=60)
    assert chosen.destinations.countries == {"US", "+44"}
    assert chosen.destinations.number_types == {"mobile"}
    assert chosen.recipient_limit == RecipientLimit(count=3, seconds=10)
    assert uncapped.recipient_limit is None


@pytest.mark.parametrize(
    ("path", "fictitious"),
    [
        ("config/gateways.yaml", None),
        ("deploy/compose/gateways.yaml", None),
        ("deploy/overlays/dev/gateways.yaml", None),
        ("deploy/base/gateways.yaml", "unknown"),
        ("deploy/overlays/production/gateways.yaml", "unknown"),
    ],
    ids=["make-run", "compose", "kubernetes-dev", "kubernetes-base", "kubernetes-production"],
)
def test_shipped_policies(path: str, fictitious: str | None) -> None:
    """Development texts the README's fictitious numbers; production keeps the strict default."""
    for gateway in load_gateways(REPOSITORY / path).gateways:
        assert refusal(gateway.destinations, "+15551234567", "US") == fictitious
        assert refusal(gateway.destinations, "+19005550100", "US") == "premium_rate"
