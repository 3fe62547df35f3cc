"""The crash test's bookkeeping (`tests.chaos.ledger`): losses, duplicates, recovery, the table."""

from __future__ import annotations

import pytest

from tests.chaos.ledger import (
    MO,
    Delivery,
    Expected,
    Phase,
    PhaseReport,
    Targets,
    received,
    report,
    table,
)

TARGETS = Targets(service=5.0, broker=10.0)


def mo(n: int, posted: float, accepted: float | None) -> MO:
    return MO((f"+1555{n:07d}", f"chaos {n}"), posted, accepted)


def reply(n: int, at: float) -> Delivery:
    return Delivery(f"+1555{n:07d}", f"chaos {n}", at)


def test_received_lists_each_pairs_arrivals_in_order() -> None:
    arrived = received([reply(1, 12.0), reply(1, 11.0), reply(2, 13.0)])
    assert arrived == {
        ("+15550000001", "chaos 1"): [11.0, 12.0],
        ("+15550000002", "chaos 2"): [13.0],
    }


def test_an_mo_belongs_to_the_phase_it_was_first_posted_in() -> None:
    steady, killed = Phase("none", 0.0), Phase("router", 10.0, restarted_at=11.0)
    mos = [mo(1, 5.0, 5.1), mo(2, 10.5, 10.6), mo(3, 12.0, 12.1)]
    deliveries = [reply(1, 5.5), reply(2, 13.0), reply(3, 13.5)]
    first, second = report([steady, killed], 20.0, mos, deliveries, TARGETS)
    assert (first.accepted, second.accepted) == (1, 2)
    assert first.problems == []
    assert second.problems == []


def test_an_accepted_mo_never_answered_is_a_loss() -> None:
    [item] = report(
        [Phase("none", 0.0)], 9.0, [mo(1, 1.0, 1.1), mo(2, 2.0, 2.1)], [reply(1, 3.0)], TARGETS
    )
    assert item.unanswered == 1
    assert item.problems == ["1 accepted MO never answered"]
    assert item.examples == (("+15550000002", "chaos 2"),)


def test_an_mo_never_accepted_fails_but_is_no_loss() -> None:
    [item] = report([Phase("none", 0.0)], 9.0, [mo(1, 1.0, None)], [], TARGETS)
    assert (item.accepted, item.not_accepted, item.unanswered) == (0, 1, 0)
    assert item.problems == ["1 MO never accepted"]


def test_a_reply_that_came_twice_is_a_duplicate() -> None:
    [item] = report(
        [Phase("none", 0.0)], 9.0, [mo(1, 1.0, 1.1)], [reply(1, 2.0), reply(1, 4.0)], TARGETS
    )
    assert item.duplicated == 1
    assert item.problems == ["1 replies sent more than once"]


def test_a_duplicate_counts_under_the_kill_before_its_second_copy() -> None:
    """An MO in flight when the broker dies is posted before that kill, and sent twice after."""
    api, broker = Phase("api", 10.0, restarted_at=11.0), Phase("broker", 20.0, restarted_at=23.0)
    mos = [mo(1, 19.9, 19.95)]
    before, after = report([api, broker], 40.0, mos, [reply(1, 19.99), reply(1, 33.0)], TARGETS)
    assert (before.accepted, before.duplicated) == (1, 0)
    assert (after.accepted, after.duplicated) == (0, 1)
    assert after.examples == (("+15550000001", "chaos 1"),)


def test_a_copy_that_arrives_after_the_run_counts_under_the_last_kill() -> None:
    broker = Phase("broker", 20.0, restarted_at=23.0)
    [item] = report([broker], 30.0, [mo(1, 21.0, 24.0)], [reply(1, 25.0), reply(1, 45.0)], TARGETS)
    assert item.duplicated == 1


def test_recovery_is_measured_from_the_restart() -> None:
    phase = Phase("ingress", 10.0, restarted_at=11.0)
    # Posted before the restart, accepted 1.5 s after it, answered 2.5 s after it.
    [item] = report([phase], 20.0, [mo(1, 10.2, 12.5)], [reply(1, 13.5)], TARGETS)
    assert item.first_2xx == pytest.approx(1.5)
    assert item.first_reply == pytest.approx(2.5)
    assert item.target == 5.0


def test_replies_that_never_stopped_recover_in_no_time() -> None:
    """A second router answers while the first is down: the first reply precedes the restart."""
    phase = Phase("router (1 of 2)", 10.0, restarted_at=11.0)
    [item] = report(
        [phase],
        20.0,
        [mo(1, 10.1, 10.2), mo(2, 11.5, 11.6)],
        [reply(1, 10.4), reply(2, 11.8)],
        TARGETS,
    )
    assert item.first_reply == 0.0
    assert item.first_2xx == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("broker", "seconds", "problem"),
    [
        (False, 5.5, "first reply 5.5 s after the restart (target 5 s)"),
        (True, 9.5, None),
        (True, 10.5, "first reply 10.5 s after the restart (target 10 s)"),
    ],
    ids=["service-over", "broker-within", "broker-over"],
)
def test_a_recovery_over_its_target_fails(
    broker: bool, seconds: float, problem: str | None
) -> None:
    phase = Phase("x", 10.0, restarted_at=11.0, broker=broker)
    [item] = report([phase], 30.0, [mo(1, 10.5, 11.2)], [reply(1, 11.0 + seconds)], TARGETS)
    assert item.problems == ([problem] if problem else [])


def test_no_reply_after_a_restart_fails() -> None:
    phase = Phase("outbound", 10.0, restarted_at=11.0)
    [item] = report([phase], 30.0, [mo(1, 10.5, 10.6)], [], TARGETS)
    assert item.first_reply is None
    assert "no first reply after the restart" in item.problems


def test_the_api_phase_takes_its_first_2xx_from_the_api() -> None:
    keys = frozenset({("+15556000000", "api chaos 0")})
    expected = Expected("api sends", keys, accepted_at=(10.5, 14.0))
    phase = Phase("api", 10.0, restarted_at=11.0, entry="api", expected=expected)
    deliveries = [reply(1, 11.3), Delivery("+15556000000", "api chaos 0", 14.2)]
    [item] = report([phase], 20.0, [mo(1, 11.1, 11.2)], deliveries, TARGETS)
    assert item.first_2xx == pytest.approx(3.0)
    assert (item.expected, item.missing, item.expected_duplicated) == (1, 0, 0)


def test_expected_messages_missing_or_sent_twice_fail() -> None:
    keys = frozenset({("+15555000000", "news"), ("+15555000001", "news"), ("+15555000002", "news")})
    phase = Phase("broadcaster", 10.0, restarted_at=11.0, expected=Expected("broadcast", keys))
    deliveries = [
        reply(1, 11.5),
        Delivery("+15555000000", "news", 12.0),
        Delivery("+15555000000", "news", 12.5),
        Delivery("+15555000001", "news", 12.0),
    ]
    [item] = report([phase], 20.0, [mo(1, 10.5, 11.2)], deliveries, TARGETS)
    assert (item.expected, item.missing, item.expected_duplicated) == (3, 1, 1)
    assert item.examples == (("+15555000002", "news"), ("+15555000000", "news"))
    assert item.problems == ["1 broadcast never sent", "1 broadcast sent more than once"]


def test_the_table_shows_the_targets_every_row_and_every_problem() -> None:
    steady = Phase("none (steady load)", 0.0)
    broker = Phase("broker", 10.0, restarted_at=13.0, broker=True)
    reports = report(
        [steady, broker],
        30.0,
        [mo(1, 1.0, 1.1), mo(2, 10.5, 14.0), mo(3, 11.0, 14.1)],
        [reply(1, 1.5), reply(2, 20.0), reply(2, 21.0)],
        TARGETS,
    )
    text = table(reports, TARGETS)
    lines = text.splitlines()
    assert "5 s of a service's restart, 10 s of the broker's" in lines[0]
    assert lines[1].split()[:3] == ["kill", "accepted", "refused"]
    steady_row = ["none", "(steady", "load)", "1", "0", "0", "0", "-", "-", "-", "-", "ok"]
    assert lines[2].split() == steady_row
    broker_row = ["broker", "2", "0", "1", "1", "1.0", "s", "7.0", "s", "10", "s", "-", "FAIL"]
    assert lines[3].split() == broker_row
    assert lines[4:] == [
        "FAIL broker: 1 accepted MO never answered",
        "FAIL broker: 1 replies sent more than once",
        "FAIL broker: lost or sent twice, e.g. 'chaos 3' to +15550000003, "
        "'chaos 2' to +15550000002",
    ]


def test_a_report_without_a_restart_has_no_target() -> None:
    item = PhaseReport(Phase("none", 0.0), None, 1, 0, 0, 0, None, None)
    assert item.problems == []
