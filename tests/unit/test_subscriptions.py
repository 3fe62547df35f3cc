"""Subscriptions' pure rules: event-source names, pages, JOIN/LEAVE naming, broadcast message
ids and the short code a broadcast is sent from."""

from __future__ import annotations

import pytest
from ulid import ULID

from twoway.broadcasts import Broadcast, broadcast_message_id
from twoway.gateways.config import GatewaysConfig
from twoway.messages import EventSource
from twoway.optouts import ANY_SHORT_CODE
from twoway.subscriptions import InvalidEventSource, Page, check_event_source
from twoway_broadcaster.fanout import sending_short_code
from twoway_subscriptions_adapter.adapter import choices, resolve


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("bank.News", id="adapter-dot-source"),
        pytest.param("my-bank.daily_News", id="dash-underscore"),
        pytest.param("acme.bank.Alerts", id="adapter-with-a-dot"),
    ],
)
def test_event_source_names_are_adapter_dot_source(name: str) -> None:
    assert check_event_source(name) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("News", id="no-adapter"),
        pytest.param("bank.", id="no-source"),
        pytest.param(".News", id="no-adapter-before-dot"),
        pytest.param("bank.News!", id="punctuation"),
        pytest.param("bank.Ne ws", id="space"),
        pytest.param("", id="empty"),
    ],
)
def test_other_event_source_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidEventSource):
        check_event_source(name)


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_a_page_holds_one_to_a_thousand(limit: int) -> None:
    with pytest.raises(ValueError, match="page"):
        Page(limit=limit)


NEWS = EventSource(name="subscriptions.News", adapter="subscriptions")
BANK_NEWS = EventSource(name="bank.News", adapter="bank")
ALERTS = EventSource(name="bank.Alerts", adapter="bank")


@pytest.mark.parametrize(
    ("word", "sources", "expected"),
    [
        pytest.param("news", [NEWS, ALERTS], (NEWS,), id="own-name-any-case"),
        pytest.param("ALERTS", [NEWS, ALERTS], (ALERTS,), id="other-adapters-source"),
        pytest.param("bank.news", [NEWS, BANK_NEWS], (BANK_NEWS,), id="full-name"),
        pytest.param("news", [NEWS, BANK_NEWS], (NEWS, BANK_NEWS), id="ambiguous"),
        pytest.param("sports", [NEWS], (), id="unknown"),
        pytest.param("", [NEWS], (), id="nothing"),
    ],
)
def test_join_names_a_source_by_full_or_own_name(
    word: str, sources: list[EventSource], expected: tuple[EventSource, ...]
) -> None:
    resolved = resolve(word, sources)
    assert resolved.matches == expected
    assert resolved.source == (expected[0] if len(expected) == 1 else None)


def test_the_menu_fits_one_sms() -> None:
    names = [f"LIST{n:02d}" for n in range(40)]
    text = choices("JOIN", names, "There is no list called X.")
    assert len(text) <= 160
    assert text.startswith("There is no list called X. Text JOIN and one of: LIST00, LIST01")
    assert text.endswith(", ...")
    assert choices("JOIN", ["NEWS"], "Which list?") == "Which list? Text JOIN and one of: NEWS."
    assert choices("JOIN", [], "Which list?") == "Which list? There is nothing to join yet."


def _broadcast(**fields: str) -> Broadcast:
    return Broadcast.model_validate(
        {"broadcast_id": str(ULID()), "event_source": "bank.News", "text": "hi", **fields}
    )


def test_a_broadcast_message_id_is_a_stable_ulid_per_broadcast_and_phone() -> None:
    broadcast, other = _broadcast(), _broadcast()
    first = broadcast_message_id(broadcast, "+15551234567")

    assert broadcast_message_id(broadcast, "+15551234567") == first
    assert broadcast_message_id(broadcast, "+15551234568") != first
    assert broadcast_message_id(other, "+15551234567") != first
    assert ULID.from_str(first).timestamp == ULID.from_str(broadcast.broadcast_id).timestamp


GATEWAYS = GatewaysConfig.model_validate(
    {
        "default_gateway": "sim",
        "gateways": [
            {"id": "sim", "type": "mobilefirst-http", "url": "http://sim", "default_sender": "123"},
            {"id": "bare", "type": "mobilefirst-http", "url": "http://bare"},
        ],
    }
)


@pytest.mark.parametrize(
    ("sender", "gateway_id", "short_code"),
    [
        pytest.param("777", "sim", "777", id="broadcast-sender"),
        pytest.param("", None, "123", id="default-gateway-sender"),
        pytest.param("", "bare", ANY_SHORT_CODE, id="no-sender-known"),
        pytest.param("", "unknown", ANY_SHORT_CODE, id="unknown-gateway"),
    ],
)
def test_a_broadcast_is_checked_against_the_opt_outs_of_the_short_code_it_comes_from(
    sender: str, gateway_id: str | None, short_code: str
) -> None:
    broadcast = _broadcast(sender=sender) if sender else _broadcast()
    assert sending_short_code(GATEWAYS, broadcast, gateway_id) == short_code
