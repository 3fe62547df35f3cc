"""What outbound does with a message whose last attempt has no logged outcome: the gateway's
policy, and how long a held message waits for a delivery report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from twoway.gateways.config import GatewayConfig, InDoubtPolicy
from twoway.message_log import AttemptStarted, MessageRecord
from twoway.messages import DeliveryStatus
from twoway_outbound.in_doubt import (
    Action,
    InDoubt,
    decide,
    gave_up_detail,
    held_until,
    in_doubt,
    unknown_detail,
)

STARTED = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
ATTEMPT = AttemptStarted(attempt=2, gateway_id="sim", at=STARTED)


def gateway(**fields: object) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "id": "sim",
            "type": "mobilefirst-http",
            "url": "http://127.0.0.1:1/",
            "public_url": "https://sms.example.com",
            **fields,
        }
    )


def record(status: DeliveryStatus, attempt: AttemptStarted | None) -> MessageRecord:
    return MessageRecord("m-1", status, "sim", None, None, [], STARTED, attempt)


DECISIONS = (
    # (policy, in_doubt_timeout, seconds since the attempt, action)
    ("resend-at-once", "resend", 60.0, 1.0, "resend"),
    ("resend-even-after-the-timeout", "resend", 60.0, 3600.0, "resend"),
    ("hold-within-the-timeout", "hold", 60.0, 59.9, "hold"),
    ("hold-gives-up-at-the-timeout", "hold", 60.0, 60.0, "give_up"),
    ("hold-gives-up-after-it", "hold", 60.0, 7200.0, "give_up"),
    ("unreported-holds-within-the-timeout", "resend_unreported", 60.0, 59.9, "hold"),
    ("unreported-resends-at-the-timeout", "resend_unreported", 60.0, 60.0, "resend"),
)


@pytest.mark.parametrize(
    ("policy", "timeout", "elapsed", "action"),
    [case[1:] for case in DECISIONS],
    ids=[case[0] for case in DECISIONS],
)
def test_decide(policy: InDoubtPolicy, timeout: float, elapsed: float, action: Action) -> None:
    config = gateway(in_doubt=policy, in_doubt_timeout=timeout)
    doubt = InDoubt(ATTEMPT, held=False)
    assert decide(doubt, config, STARTED + timedelta(seconds=elapsed)) == action


def test_a_gateway_holds_for_an_hour_by_default() -> None:
    config = gateway()
    assert (config.in_doubt, config.in_doubt_timeout) == ("hold", 3600.0)
    doubt = InDoubt(ATTEMPT, held=True)
    assert held_until(doubt, config) == STARTED + timedelta(hours=1)


@pytest.mark.parametrize(
    "fields",
    [
        {"in_doubt": "retry"},
        {"in_doubt_timeout": 0},
        {"in_doubt_timeout": -5},
        {"in_doubt": "resend_unreported", "public_url": None},
    ],
    ids=["unknown-policy", "zero-timeout", "negative-timeout", "unreported-without-reports"],
)
def test_config_refuses(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="in_doubt"):
        gateway(**fields)


IN_DOUBT = (
    ("no-attempt-noted", record("sent", None), None),
    ("noted-not-held-yet", record("accepted", ATTEMPT), InDoubt(ATTEMPT, held=False)),
    ("noted-after-a-retry", record("retrying", ATTEMPT), InDoubt(ATTEMPT, held=False)),
    ("noted-and-held", record("unknown", ATTEMPT), InDoubt(ATTEMPT, held=True)),
)


@pytest.mark.parametrize(
    ("logged", "expected"),
    [case[1:] for case in IN_DOUBT],
    ids=[case[0] for case in IN_DOUBT],
)
def test_in_doubt(logged: MessageRecord, expected: InDoubt | None) -> None:
    assert in_doubt(logged) == expected


def test_details_say_which_attempt_and_the_policy() -> None:
    config = gateway(in_doubt_timeout=90)
    doubt = InDoubt(ATTEMPT, held=False)
    assert unknown_detail(doubt, config) == (
        "in doubt: attempt 2 to sim at 2026-12-07T21:00:00+00:00 has no logged outcome "
        "(outbound stopped during it); not sent again (in_doubt: hold), waiting up to 90 s "
        "for a delivery report"
    )
    assert gave_up_detail(doubt, config) == (
        "unknown outcome: attempt 2 to sim at 2026-12-07T21:00:00+00:00 had no delivery report "
        "within 90 s; not sent again (in_doubt: hold)"
    )


def test_unreported_says_it_will_be_sent_again() -> None:
    config = gateway(in_doubt="resend_unreported", in_doubt_timeout=90)
    assert unknown_detail(InDoubt(ATTEMPT, held=False), config).endswith(
        "(outbound stopped during it); sent again without one (in_doubt: resend_unreported), "
        "waiting up to 90 s for a delivery report"
    )
