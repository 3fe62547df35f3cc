"""Dedupe keys: which posts of an SMS count as the same one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from twoway.dedupe import dedupe_key
from twoway.messages import InboundSMS

WINDOW = timedelta(seconds=30)
RETENTION = timedelta(days=1)


def sms(**overrides: Any) -> InboundSMS:
    fields: dict[str, Any] = {
        "gateway_id": "sim",
        "sender": "+14155552671",
        "recipient": "12345",
        "text": "BAL",
    }
    return InboundSMS(**{**fields, **overrides})


def key(message: InboundSMS, window: timedelta = WINDOW) -> str | None:
    found = dedupe_key(message, id_retention=RETENTION, content_window=window)
    return found.digest if found else None


SAME = [
    pytest.param(sms(gateway_message_id="g1"), sms(gateway_message_id="g1"), id="same-gateway-id"),
    pytest.param(
        sms(gateway_message_id="g1", text="BAL"),
        sms(gateway_message_id="g1", text="other"),
        id="gateway-id-wins-over-content",
    ),
    pytest.param(sms(), sms(), id="same-content"),
    pytest.param(sms(params={"a": "1"}), sms(params={"a": "2"}), id="parameters-do-not-count"),
]

DIFFERENT = [
    pytest.param(sms(gateway_message_id="g1"), sms(gateway_message_id="g2"), id="other-id"),
    pytest.param(
        sms(gateway_message_id="g1"),
        sms(gateway_message_id="g1", gateway_id="kannel"),
        id="same-id-other-gateway",
    ),
    pytest.param(sms(), sms(gateway_message_id="g1"), id="content-and-id"),
    pytest.param(sms(), sms(text="BAL "), id="other-text"),
    pytest.param(sms(), sms(sender="+14155550000"), id="other-sender"),
    pytest.param(sms(), sms(recipient="67890"), id="other-recipient"),
    pytest.param(sms(), sms(gateway_id="kannel"), id="other-gateway"),
    pytest.param(
        sms(sender="+1", recipient="23"), sms(sender="+12", recipient="3"), id="no-field-bleed"
    ),
]


@pytest.mark.parametrize(("first", "second"), SAME)
def test_same_key(first: InboundSMS, second: InboundSMS) -> None:
    assert key(first) is not None
    assert key(first) == key(second)


@pytest.mark.parametrize(("first", "second"), DIFFERENT)
def test_different_key(first: InboundSMS, second: InboundSMS) -> None:
    assert key(first) != key(second)


def test_time_to_live_by_kind() -> None:
    by_id = dedupe_key(sms(gateway_message_id="g1"), id_retention=RETENTION, content_window=WINDOW)
    by_content = dedupe_key(sms(), id_retention=RETENTION, content_window=WINDOW)
    assert by_id is not None
    assert by_content is not None
    assert (by_id.ttl, by_content.ttl) == (RETENTION, WINDOW)


def test_a_zero_window_turns_content_dedupe_off_but_not_id_dedupe() -> None:
    assert key(sms(), timedelta(0)) is None
    assert key(sms(gateway_message_id="g1"), timedelta(0)) is not None


def test_the_key_holds_no_phone_number_or_text() -> None:
    digest = key(sms(text="my secret pin 1234"))
    assert digest is not None
    assert len(digest) == 64
    assert "4155552671" not in digest
    assert "1234" not in digest
