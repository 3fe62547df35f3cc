"""The bank adapter's parsing of what texters answer, and its handler set."""

from __future__ import annotations

from decimal import Decimal

import pytest

from twoway_bank_adapter.adapter import adapter, parse_account, parse_amount

AMOUNTS = [
    ("whole", "12", Decimal("12.00")),
    ("cents", "12.50", Decimal("12.50")),
    ("one-decimal", "12.5", Decimal("12.50")),
    ("dollar-sign", "$7", Decimal("7.00")),
    ("thousands-comma", "1,000", Decimal("1000.00")),
    ("padded", "  3.10 ", Decimal("3.10")),
    ("zero", "0", None),
    ("negative", "-5", None),
    ("three-decimals", "1.005", None),
    ("words", "ten dollars", None),
    ("empty", "", None),
    ("not-a-number", "NaN", None),
    ("infinite", "Infinity", None),
]


@pytest.mark.parametrize(
    ("text", "expected"), [case[1:] for case in AMOUNTS], ids=[case[0] for case in AMOUNTS]
)
def test_parse_amount(text: str, expected: Decimal | None) -> None:
    assert parse_amount(text) == expected


ACCOUNTS = [
    ("digits", "12345678", "12345678"),
    ("spaces-and-dashes", "1234 5678-90", "1234567890"),
    ("too-short", "12345", None),
    ("too-long", "1" * 21, None),
    ("letters", "ACCT1234", None),
    ("empty", "", None),
]


@pytest.mark.parametrize(
    ("text", "expected"), [case[1:] for case in ACCOUNTS], ids=[case[0] for case in ACCOUNTS]
)
def test_parse_account(text: str, expected: str | None) -> None:
    assert parse_account(text) == expected


def test_only_keyword_handlers_are_registered_the_steps_wait_for_answers() -> None:
    assert [(r.handler, r.filter) for r in adapter.registrations] == [
        ("balance", {"keyword": ["BAL", "BALANCE"]}),
        ("transfer", {"keyword": "TRANSFER"}),
    ]
