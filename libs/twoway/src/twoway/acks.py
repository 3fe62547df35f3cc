"""Which acks to send for one channel's deliveries, so that deliveries settled together cost one
frame (pure: `twoway.broker.Consumer` sends what `AckWindow.take` returns).

AMQP's `basic.ack(tag, multiple=True)` acks every outstanding delivery of the channel up to `tag`.
A channel numbers its deliveries 1, 2, 3, ...; one is covered by a `multiple` ack only when every
delivery up to it is known here and settled: none still being handled, none delivered but not yet
seen by its consumer (their tasks start in no promised order), and nacks sent before (a nacked
delivery is no longer outstanding). A delivery settled behind one still in hand is acked alone at
once: it must not wait for a slow one, as it holds a prefetch slot.
"""

from __future__ import annotations

from typing import Literal

_State = Literal["in hand", "to ack", "acked", "nacked"]


class AckWindow:
    """The deliveries of one channel from the first not known to be settled on."""

    def __init__(self) -> None:
        self._settled_through = 0  # every delivery up to this tag is acked or nacked
        self._open: dict[int, _State] = {}

    def received(self, tag: int) -> None:
        self._open[tag] = "in hand"

    def settle(self, tag: int, *, ack: bool) -> None:
        """`tag` was handled: it needs an ack, or (`ack=False`) it was nacked already."""
        self._open[tag] = "to ack" if ack else "nacked"

    def take(self) -> list[tuple[int, bool]]:
        """The acks to send now, as (delivery tag, multiple): one `multiple` ack for the run of
        settled deliveries that follows those settled before, then one single ack for each
        delivery settled behind one still in hand or not yet received."""
        acks: list[tuple[int, bool]] = []
        covered: int | None = None
        tag = self._settled_through + 1
        while self._open.get(tag, "in hand") != "in hand":
            if self._open.pop(tag) == "to ack":
                covered = tag
            tag += 1
        self._settled_through = tag - 1
        if covered is not None:
            acks.append((covered, True))
        for tag, state in self._open.items():
            if state == "to ack":
                self._open[tag] = "acked"  # forgotten once the run reaches it
                acks.append((tag, False))
        return acks
