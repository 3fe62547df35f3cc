"""What outbound sent, so that a redelivered message is never sent twice.

The record of a send is the `sent` entry in the message's log (`twoway.message_log`), written
(in group commits) *before* the message is acked, so no second collection is written per send.
A delivery that may repeat an earlier one is looked up in the log first and, if it was sent, not
sent again (`twoway.broker.may_repeat`): one that RabbitMQ flags `redelivered` (the consumer
died or lost its channel before acking), a retry, and a copy its publisher marked
`HEADER_REPEAT`: the api re-publishing a message whose first publish it cannot vouch for, or an
adapter or the router answering an SMS that may have been answered before. Such an answer has
the same id as the first (`twoway.messages.derive_message_id`), so it is found. The same
process also remembers the last ids it sent, so a duplicate there costs no lookup, and `Sender`
handles the copies of one id one after the other, so a second copy in the same process finds
the first one's record. What is not covered: a crash
between the gateway's answer and the log write (a few milliseconds) resends that message; two
copies handled at the same moment by two replicas are both sent; and a gateway timeout after the
gateway accepted is indistinguishable from a failure (at-least-once towards the gateway, as with
any HTTP API that has no idempotency key).
The log's TTL (`message_log_ttl`) must outlast any redelivery, which it does by days.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from twoway.message_log import MessageLog

SENT = ("sent", "delivered")
"""Statuses that show the gateway took the message (its delivery report may be logged first)."""


@dataclass(frozen=True)
class SentRecord:
    message_id: str
    gateway_id: str | None
    gateway_message_id: str | None


class SentLedger:
    def __init__(self, message_log: MessageLog, remember: int = 100_000) -> None:
        self._message_log = message_log
        self._remember = remember
        self._recent: OrderedDict[str, SentRecord] = OrderedDict()

    async def find(self, message_id: str, *, may_repeat: bool) -> SentRecord | None:
        """The record of `message_id` if it was sent; the database is asked only for a delivery
        that `may_repeat` an earlier one."""
        record = self._recent.get(message_id)
        if record is not None or not may_repeat:
            return record
        logged = await self._message_log.get(message_id)
        if logged is None or not any(entry["status"] in SENT for entry in logged.history):
            return None
        return SentRecord(message_id, logged.gateway_id, logged.gateway_message_id)

    def remember(self, record: SentRecord) -> None:
        """Note a send whose `sent` event is in the log."""
        self._recent[record.message_id] = record
        while len(self._recent) > self._remember:
            self._recent.popitem(last=False)
