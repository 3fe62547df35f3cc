"""A consumed message's transport state, read once from its AMQP headers (`twoway.consumed`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from opentelemetry import trace
from pamqp.common import FieldValue

from twoway.consumed import BadHeader, Delivery, read_delivery

MAX_DELIVERIES = 5


def delivery(headers: dict[str, FieldValue] | None, *, redelivered: bool = False) -> Delivery:
    return read_delivery(
        b"{}",
        headers,
        message_id="m1",
        correlation_id="c1",
        type="inbound_sms",
        redelivered=redelivered,
        max_deliveries=MAX_DELIVERIES,
    )


def test_a_first_delivery_without_headers_takes_every_default() -> None:
    first = delivery(None)
    assert (first.message_id, first.correlation_id, first.type) == ("m1", "c1", "inbound_sms")
    assert (first.number, first.final, first.attempt, first.parts_sent) == (1, False, 1, 0)
    assert (first.handler, first.conversation, first.retry_due) == (None, None, None)
    assert (first.redelivered, first.repeat) == (False, False)
    assert first.headers == {}


def test_every_header_of_ours_is_read_into_its_field() -> None:
    headers: dict[str, FieldValue] = {
        "x-delivery-count": 2,
        "twoway-attempt": 3,
        "twoway-handler": "amount",
        "twoway-conversation": "q1",
        "twoway-parts-sent": 2,
        "twoway-repeat": True,
        "twoway-retry-due": 1_800_000_000_000,
        "x-other": "kept",
    }
    read = delivery(headers, redelivered=True)
    assert (read.number, read.attempt, read.parts_sent) == (3, 3, 2)
    assert (read.handler, read.conversation, read.repeat, read.redelivered) == (
        "amount",
        "q1",
        True,
        True,
    )
    assert read.retry_due == datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    copied = {name: value for name, value in headers.items() if name != "x-delivery-count"}
    assert read.headers == copied, "kept to copy on, less the count of this copy's deliveries"


def test_the_trace_context_is_read_from_the_traceparent() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    read = delivery({"traceparent": traceparent})
    span = trace.get_current_span(read.trace).get_span_context()
    assert span.trace_id == 0x0AF7651916CD43DD8448EB211C80319C


FINAL = [
    ("first", None, 1, False),
    ("one-before-last", 3, 4, False),
    ("last", 4, 5, True),
    ("past-the-last", 9, 10, True),
]


@pytest.mark.parametrize(
    ("count", "number", "final"), [case[1:] for case in FINAL], ids=[case[0] for case in FINAL]
)
def test_the_delivery_number_counts_the_brokers_earlier_deliveries(
    count: int | None, number: int, final: bool
) -> None:
    read = delivery({} if count is None else {"x-delivery-count": count})
    assert (read.number, read.final) == (number, final)


LENIENT = [
    ("digits-as-text", {"twoway-attempt": "4"}, "attempt", 4),
    ("digits-as-bytes", {"twoway-parts-sent": b"2"}, "parts_sent", 2),
    ("empty-handler-is-none", {"twoway-handler": ""}, "handler", None),
    ("handler-as-bytes", {"twoway-handler": b"echo"}, "handler", "echo"),
    ("repeat-marker-of-any-value", {"twoway-repeat": "yes"}, "repeat", True),
]


@pytest.mark.parametrize(
    ("headers", "field", "value"), [case[1:] for case in LENIENT], ids=[case[0] for case in LENIENT]
)
def test_values_an_older_publisher_may_write_still_read(
    headers: dict[str, FieldValue], field: str, value: object
) -> None:
    assert getattr(delivery(headers), field) == value


BAD = [
    ("attempt-not-a-number", {"twoway-attempt": "second"}, "twoway-attempt"),
    ("attempt-zero", {"twoway-attempt": 0}, "twoway-attempt"),
    ("attempt-negative", {"twoway-attempt": -1}, "twoway-attempt"),
    ("attempt-a-boolean", {"twoway-attempt": True}, "twoway-attempt"),
    ("attempt-a-float", {"twoway-attempt": 2.5}, "twoway-attempt"),
    ("parts-sent-a-list", {"twoway-parts-sent": [1]}, "twoway-parts-sent"),
    ("delivery-count-text", {"x-delivery-count": "many"}, "x-delivery-count"),
    ("handler-a-number", {"twoway-handler": 7}, "twoway-handler"),
    ("conversation-a-table", {"twoway-conversation": {"id": "q1"}}, "twoway-conversation"),
    ("retry-due-text", {"twoway-retry-due": "tomorrow"}, "twoway-retry-due"),
    ("retry-due-beyond-any-date", {"twoway-retry-due": 10**20}, "twoway-retry-due"),
]


@pytest.mark.parametrize(
    ("headers", "name"), [case[1:] for case in BAD], ids=[case[0] for case in BAD]
)
def test_a_header_of_the_wrong_type_is_refused_by_name(
    headers: dict[str, FieldValue], name: str
) -> None:
    with pytest.raises(BadHeader, match=name):
        delivery(headers)


def test_headers_that_are_not_ours_are_never_read() -> None:
    read = delivery({"x-death": [{"count": "odd"}], "x-custom": 3.5})
    assert (read.number, read.attempt) == (1, 1)
