"""Coalesced acks: a run of settled deliveries at the head of a channel's window costs one
`multiple` ack; nothing in hand or already nacked is ever covered by one; a delivery settled
behind one in hand is acked alone, not held back."""

from __future__ import annotations

import pytest

from twoway.acks import AckWindow

# (id, deliveries received, settled in order as (tag, ack), acks expected from `take`)
CASES: tuple[tuple[str, list[int], list[tuple[int, bool]], list[tuple[int, bool]]], ...] = (
    ("nothing-settled", [1, 2], [], []),
    ("one", [1], [(1, True)], [(1, True)]),
    ("head-run-in-one-frame", [1, 2, 3, 4], [(3, True), (1, True), (2, True)], [(3, True)]),
    ("behind-one-in-hand-alone", [1, 2, 3], [(2, True), (3, True)], [(2, False), (3, False)]),
    ("head-run-then-alone", [1, 2, 3, 4], [(1, True), (4, True)], [(1, True), (4, False)]),
    ("nacked-head-needs-no-ack", [1, 2], [(1, False)], []),
    ("multiple-stops-at-last-ack", [1, 2, 3], [(1, True), (2, False)], [(1, True)]),
    ("multiple-spans-a-nack", [1, 2, 3], [(2, False), (1, True), (3, True)], [(3, True)]),
    ("nacked-behind-in-hand-forgotten", [1, 2, 3], [(2, False), (3, True)], [(3, False)]),
)


@pytest.mark.parametrize(
    ("received", "settled", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_take(
    received: list[int], settled: list[tuple[int, bool]], expected: list[tuple[int, bool]]
) -> None:
    window = AckWindow()
    for tag in received:
        window.received(tag)
    for tag, ack in settled:
        window.settle(tag, ack=ack)
    assert window.take() == expected


def test_taken_acks_are_forgotten_and_the_rest_kept() -> None:
    window = AckWindow()
    for tag in (1, 2, 3):
        window.received(tag)
    window.settle(2, ack=True)
    assert window.take() == [(2, False)]
    assert window.take() == []
    window.settle(1, ack=True)
    window.settle(3, ack=True)
    assert window.take() == [(3, True)]
    assert window.take() == []
