"""Which acks to send for one channel's deliveries, so that deliveries settled together cost one
frame (pure: `twoway.broker.Consumer` sends what `AckWindow.take` returns).

AMQP's `basic.ack(tag, multiple=True)` acks every outstanding delivery of the channel up to `tag`.
Deliveries still being handled, or settled by a nack (sent at once, so no longer outstanding),
must never be covered by one, and a delivery settled behind one still in hand must not wait for
it (it holds a prefetch slot): it is acked alone.
"""

from __future__ import annotations

from typing import Literal

_State = Literal["in hand", "ack", "settled"]


class AckWindow:
    """The deliveries of one channel that are not acked yet, in delivery order (a channel's
    delivery tags grow)."""

    def __init__(self) -> None:
        self._open: dict[int, _State] = {}  # insertion order is delivery order

    def received(self, tag: int) -> None:
        self._open[tag] = "in hand"

    def settle(self, tag: int, *, ack: bool) -> None:
        """`tag` was handled: it needs an ack, or (`ack=False`) it was nacked already."""
        self._open[tag] = "ack" if ack else "settled"

    def take(self) -> list[tuple[int, bool]]:
        """The acks to send now, as (delivery tag, multiple), and forget them: one `multiple` ack
        for the settled deliveries at the head, then one single ack for each settled delivery
        behind one still in hand."""
        acks: list[tuple[int, bool]] = []
        last_head_ack: int | None = None
        for tag, state in list(self._open.items()):
            if state == "in hand":
                break
            del self._open[tag]
            if state == "ack":
                last_head_ack = tag
        if last_head_ack is not None:
            acks.append((last_head_ack, True))
        for tag, state in list(self._open.items()):
            if state != "in hand":
                del self._open[tag]
                if state == "ack":
                    acks.append((tag, False))
        return acks
