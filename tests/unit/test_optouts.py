"""The opt-out rules outbound applies: which short codes an opt-out blocks, and exemptions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from twoway.messages import ANY_MESSAGE, OptOutChanged, OutboundSMS
from twoway.optouts import ANY_SHORT_CODE, Exemption, OptOut, OptOutIndex, refuses

PHONE = "+14155552671"
AT = datetime(2026, 11, 25, tzinfo=UTC)


def optout(short_code: str, *exempt: OutboundSMS, phone: str = PHONE) -> OptOut:
    exemptions = tuple(Exemption.of(message) for message in exempt)
    return OptOut(phone=phone, short_code=short_code, opted_out_at=AT, exemptions=exemptions)


def sms(text: str = "hello", to: str = PHONE) -> OutboundSMS:
    return OutboundSMS(to=to, text=text)


CONFIRMATION = sms("You are unsubscribed")


@dataclass(frozen=True)
class RefusalCase:
    id: str
    optouts: tuple[OptOut, ...]
    message: OutboundSMS
    short_code: str
    refused: bool


REFUSAL_CASES = (
    RefusalCase("not-opted-out", (), sms(), "12345", False),
    RefusalCase("opted-out-of-this-short-code", (optout("12345"),), sms(), "12345", True),
    RefusalCase("opted-out-of-another-short-code", (optout("67890"),), sms(), "12345", False),
    RefusalCase("another-number-opted-out", (optout("12345", phone="+1"),), sms(), "12345", False),
    RefusalCase("opted-out-of-unknown-short-code", (optout(ANY_SHORT_CODE),), sms(), "12345", True),
    RefusalCase("sent-from-unknown-short-code", (optout("67890"),), sms(), ANY_SHORT_CODE, True),
    RefusalCase(
        "the-confirmation-is-exempt", (optout("12345", CONFIRMATION),), CONFIRMATION, "12345", False
    ),
    RefusalCase(
        "other-text-under-the-confirmations-id",
        (optout("12345", CONFIRMATION),),
        CONFIRMATION.model_copy(update={"text": "Buy now"}),
        "12345",
        True,
    ),
    RefusalCase(
        "same-text-another-id",
        (optout("12345", CONFIRMATION),),
        sms(CONFIRMATION.text),
        "12345",
        True,
    ),
    RefusalCase(
        "exempt-by-one-of-two-blocking-optouts",
        (optout("12345", CONFIRMATION), optout(ANY_SHORT_CODE)),
        CONFIRMATION,
        "12345",
        False,
    ),
)


@pytest.mark.parametrize("case", REFUSAL_CASES, ids=[case.id for case in REFUSAL_CASES])
def test_refusal(case: RefusalCase) -> None:
    assert refuses(case.optouts, case.message, case.short_code) is case.refused
    # the in-memory index never lets through what the rule refuses
    index = OptOutIndex((optout.phone, optout.short_code) for optout in case.optouts)
    if case.refused:
        assert index.may_refuse(case.message.to, case.short_code)


def test_replacing_a_numbers_optouts_in_the_index() -> None:
    index = OptOutIndex([(PHONE, "12345"), (PHONE, "67890"), ("+2", "12345")])
    assert len(index) == 3
    index.replace(PHONE, ["67890"])
    assert not index.may_refuse(PHONE, "12345")
    assert index.may_refuse(PHONE, "67890")
    assert index.may_refuse(PHONE, ANY_SHORT_CODE)
    index.replace(PHONE, [])
    assert len(index) == 1
    assert not index.may_refuse(PHONE, ANY_SHORT_CODE)
    assert index.may_refuse("+2", "12345")


def test_the_event_of_an_outbound_sms_carries_its_id_adapter_and_trace() -> None:
    message = OutboundSMS(
        to=PHONE, text="hi", adapter="bank", correlation_id="c1", trace={"traceparent": "t"}
    )
    event = message.event("failed", "sim", "opted_out")
    assert (event.outbound_id, event.status, event.gateway_id, event.detail) == (
        message.message_id,
        "failed",
        "sim",
        "opted_out",
    )
    assert (event.adapter, event.correlation_id, event.trace) == ("bank", "c1", message.trace)
    assert event.gateway_message_id is None


def test_an_optout_change_travels_as_a_control_message() -> None:
    change = OptOutChanged(phone=PHONE)
    assert ANY_MESSAGE.validate_json(change.model_dump_json()) == change
