"""Joining the parts of a long SMS, no I/O (MongoDB: the gateway ingress integration tests)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from twoway.gateways.parts import MessagePart
from twoway.messages import InboundSMS
from twoway_ingress.long_messages import assemble, set_key


def part(number: int, text: str, keyword: str = "") -> InboundSMS:
    return InboundSMS(
        gateway_id="vonage",
        gateway_message_id=f"0A0{number}",
        sender="+447700900001",
        recipient="447700900000",
        text=text,
        keyword=keyword,
        params={"concat-part": str(number)},
        received_at=datetime(2026, 1, 1, 12, 0, number, tzinfo=UTC),
    )


ASSEMBLE_CASES = (
    ("keyword-of-part-one", ("BAL please ", "now"), "", "BAL"),
    ("word-split-between-parts", ("BA", "L please"), "BA", "BAL"),
    ("keyword-the-gateway-chose", ("hello ", "there"), "JOIN", "JOIN"),
)


@pytest.mark.parametrize(
    ("texts", "given", "keyword"),
    [c[1:] for c in ASSEMBLE_CASES],
    ids=[c[0] for c in ASSEMBLE_CASES],
)
def test_assemble(texts: tuple[str, ...], given: str, keyword: str) -> None:
    parts = [part(n, text, given if n == 1 else "") for n, text in enumerate(texts, start=1)]
    whole = assemble(parts, "01JLONG")
    assert (whole.message_id, whole.text, whole.keyword) == ("01JLONG", "".join(texts), keyword)
    assert (whole.gateway_message_id, whole.params) == ("0A01", {"concat-part": "1"})
    assert (whole.sender, whole.recipient) == ("+447700900001", "447700900000")
    assert whole.received_at == parts[-1].received_at


def test_a_set_is_named_by_gateway_sender_reference_and_total_only() -> None:
    key = set_key(part(1, "a"), MessagePart("08B5", 1, 3))
    assert key == set_key(part(2, "b"), MessagePart("08B5", 2, 3))
    assert key != set_key(part(1, "a"), MessagePart("08B5", 1, 2))
    assert key != set_key(part(1, "a"), MessagePart("08B6", 1, 3))
    assert "447700900001" not in key
