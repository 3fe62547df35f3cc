"""What outbound sent, so that a redelivered message is never sent twice, and which attempts are
in doubt.

The record of a send is the `sent` entry in the message's log (`twoway.message_log`), written
(in group commits) *before* the message is acked, so no second collection is written per send.
A delivery that may repeat an earlier one is looked up in the log first and, if it was sent, not
sent again (`Delivery.may_repeat`): one that RabbitMQ flags `redelivered` (the consumer died or
lost its channel before acking), a retry, and a copy its publisher marked `HEADER_REPEAT`: the
api re-publishing a message whose first publish it cannot vouch for, or an adapter or the router
answering an SMS that may have been answered before. Such an answer has the same id as the first
(`twoway.messages.derive_message_id`), so it is found. The same process also remembers the last
ids it sent, so a duplicate there costs no lookup, and `Sender` handles the copies of one id one
after the other, so a second copy in the same process finds the first one's record.

Each attempt is noted in the log right before its request goes out (`start`), and its outcome
clears the note: a crash between the gateway's answer and the log write leaves the note, and the
redelivered message is in doubt (`twoway_outbound.in_doubt`) instead of sent again blindly.
What is not covered: two copies handled at the same moment by two replicas are both sent; and a
gateway timeout after the gateway accepted is indistinguishable from a failure (at-least-once
towards a gateway that does not deduplicate on our message id).
The log's TTL (`message_log_ttl`) must outlast any redelivery, which it does by days.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from twoway.message_log import AttemptStarted, MessageLog
from twoway.messages import DeliveryEvent
from twoway_outbound.in_doubt import InDoubt, in_doubt

SENT = ("sent", "delivered")
"""Statuses that show the gateway took the message (its delivery report may be logged first)."""


@dataclass(frozen=True)
class SentRecord:
    message_id: str
    gateway_id: str | None
    gateway_message_id: str | None


@dataclass(frozen=True)
class Past:
    """What the log says of a message before outbound handles a delivery of it."""

    logged: bool
    """The log has the message (looked up only for a delivery that may repeat one)."""
    sent: SentRecord | None = None
    in_doubt: InDoubt | None = None


NOTHING_LOGGED = Past(logged=False)


class SentLedger:
    def __init__(self, message_log: MessageLog, remember: int = 100_000) -> None:
        self._message_log = message_log
        self._remember = remember
        self._recent: OrderedDict[str, SentRecord] = OrderedDict()

    async def find(self, message_id: str, *, may_repeat: bool) -> Past:
        """What became of `message_id`; the database is asked only for a delivery that
        `may_repeat` an earlier one."""
        record = self._recent.get(message_id)
        if record is not None:
            return Past(logged=True, sent=record)
        if not may_repeat:
            return NOTHING_LOGGED
        logged = await self._message_log.get(message_id)
        if logged is None:
            return NOTHING_LOGGED
        sent = None
        if any(entry["status"] in SENT for entry in logged.history):
            sent = SentRecord(message_id, logged.gateway_id, logged.gateway_message_id)
        return Past(logged=True, sent=sent, in_doubt=in_doubt(logged))

    async def start(
        self, message_id: str, attempt: AttemptStarted, *accepted: DeliveryEvent
    ) -> None:
        """Note, with the message's `accepted` event if it has one, that `attempt` is about to
        be sent; returns once written."""
        await self._message_log.start_attempt(message_id, attempt, *accepted)

    def remember(self, record: SentRecord) -> None:
        """Note a send whose `sent` event is in the log."""
        self._recent[record.message_id] = record
        while len(self._recent) > self._remember:
            self._recent.popitem(last=False)
