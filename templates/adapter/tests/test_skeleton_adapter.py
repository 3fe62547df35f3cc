"""The skeleton adapter's rules, without I/O."""

from __future__ import annotations

import pytest
from twoway_skeleton_adapter.adapter import adapter, greeting

GREETINGS = [
    ("a-name", ["Ada"], "Hello, Ada!"),
    ("two-words", ["Ada", "Lovelace"], "Hello, Ada Lovelace!"),
    ("no-name", [], "Hello! Send HELLO and your name."),
]


@pytest.mark.parametrize(
    ("words", "expected"), [case[1:] for case in GREETINGS], ids=[case[0] for case in GREETINGS]
)
def test_greeting(words: list[str], expected: str) -> None:
    assert greeting(words) == expected


def test_the_adapter_registers_its_handlers() -> None:
    assert [registration.handler for registration in adapter.registrations] == ["hello"]
    assert adapter.registrations[0].filter == {"keyword": "HELLO"}
