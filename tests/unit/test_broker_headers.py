"""Header values are capped, whoever built them (`twoway.broker.capped_header`)."""

from __future__ import annotations

import pytest
from pamqp.common import FieldValue

from twoway.broker import MAX_HEADER_CHARS, capped_header

LONG = "x" * (MAX_HEADER_CHARS + 1)
CUT = "x" * (MAX_HEADER_CHARS - 1) + "…"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("short", "short", id="short-text"),
        pytest.param("x" * MAX_HEADER_CHARS, "x" * MAX_HEADER_CHARS, id="text-at-the-cap"),
        pytest.param(LONG, CUT, id="long-text"),
        pytest.param(b"y" * 5000, b"y" * MAX_HEADER_CHARS, id="long-bytes"),
        pytest.param([LONG, 3], [CUT, 3], id="text-in-a-list"),
        pytest.param({"inner": LONG}, {"inner": CUT}, id="text-in-a-table"),
        pytest.param(7, 7, id="number"),
        pytest.param(True, True, id="boolean"),
    ],
)
def test_header_values_are_capped(value: FieldValue, expected: FieldValue) -> None:
    assert capped_header(value) == expected
