"""Outbound's in-doubt window, and what each gateway's policy makes of it.

An attempt is noted in the message log (`AttemptStarted`) right before its request goes to the
gateway, and the event that logs its outcome clears it. When outbound stops between the two
(killed, or its broker connection lost, after the request went out and before the log write),
the message comes back with the attempt still noted: the gateway may or may not have it. That
message is *in doubt*, and its gateway's `in_doubt` policy decides:

- `resend`: send it again at once (the gateway drops a copy of a message it already has);
- `hold` (the default): never send it again. It gets an `unknown` event and waits; a delivery
  report for it clears the attempt (the report's status is the message's; when the held message
  comes back and finds it delivered, outbound announces `sent` too, so whoever counts outbound's
  `sent`/`failed`/`expired`, like the broadcaster, counts it once), and with none within
  `in_doubt_timeout` seconds of the attempt it is `failed` and dead-lettered: at most once;
- `resend_unreported`: held the same way, but with no report within `in_doubt_timeout` it is sent
  again, for a gateway that reports every message it takes within that time: its silence shows
  the request never left (outbound stopped after noting the attempt and before sending it).

An attempt younger than its request's timeout (and the write of its outcome) is not in doubt
yet: another copy of the message (a repeat that reached another outbound replica) may still be
sending it. The copy that finds it waits until that attempt must have ended (`in_flight_until`),
then looks again: sent by then, it is not sent again; still without an outcome, it is in doubt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from twoway.gateways.config import GatewayConfig
from twoway.message_log import AttemptStarted, MessageRecord

Action = Literal["resend", "hold", "give_up"]
"""What to do with a message in doubt: send it again, hold it (an `unknown` event, then wait for
a delivery report), or stop waiting (`failed`)."""


@dataclass(frozen=True)
class InDoubt:
    attempt: AttemptStarted
    """The attempt whose outcome nobody logged."""
    held: bool
    """An `unknown` event already says so: outbound held it before."""


def in_doubt(record: MessageRecord) -> InDoubt | None:
    """The attempt of a logged message that is in doubt, for a delivery that may repeat one
    outbound already handled (an attempt is noted only while its request is out)."""
    if record.attempt is None:
        return None
    return InDoubt(record.attempt, held=record.status == "unknown")


OUTCOME_WRITE_SECONDS = 2.0
"""How long after its request ends an attempt's outcome may take to be logged (a group commit
under load)."""


def in_flight_until(doubt: InDoubt, gateway: GatewayConfig) -> datetime:
    """Until when the attempt of `doubt` may still be running in another copy's handling."""
    seconds = gateway.timeout + OUTCOME_WRITE_SECONDS
    return doubt.attempt.at + timedelta(seconds=seconds)


def held_until(doubt: InDoubt, gateway: GatewayConfig) -> datetime:
    """When a held message stops waiting for a delivery report."""
    return doubt.attempt.at + timedelta(seconds=gateway.in_doubt_timeout)


def decide(doubt: InDoubt, gateway: GatewayConfig, now: datetime) -> Action:
    """What `gateway`'s policy does with `doubt` at `now`."""
    if gateway.in_doubt == "resend":
        return "resend"
    if now < held_until(doubt, gateway):
        return "hold"
    return "resend" if gateway.in_doubt == "resend_unreported" else "give_up"


def unknown_detail(doubt: InDoubt, gateway: GatewayConfig) -> str:
    """The `unknown` event's detail: why, and until when it waits."""
    attempt = doubt.attempt
    then = (
        "not sent again (in_doubt: hold)"
        if gateway.in_doubt == "hold"
        else "sent again without one (in_doubt: resend_unreported)"
    )
    return (
        f"in doubt: attempt {attempt.attempt} to {attempt.gateway_id} at "
        f"{attempt.at.isoformat()} has no logged outcome (outbound stopped during it); {then}, "
        f"waiting up to {gateway.in_doubt_timeout:g} s for a delivery report"
    )


def gave_up_detail(doubt: InDoubt, gateway: GatewayConfig) -> str:
    """The `failed` event's detail when no delivery report came in time."""
    attempt = doubt.attempt
    return (
        f"unknown outcome: attempt {attempt.attempt} to {attempt.gateway_id} at "
        f"{attempt.at.isoformat()} had no delivery report within {gateway.in_doubt_timeout:g} s; "
        "not sent again (in_doubt: hold)"
    )
