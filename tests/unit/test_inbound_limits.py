"""Inbound limits' counting and decisions (`LimitCounts`), on a fake clock, no database."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import structlog
from prometheus_client import REGISTRY

from twoway.gateways.limits import InboundLimits, Window
from twoway.messages import InboundSMS
from twoway_ingress.inbound_limits import LimitCounts, LimitExceeded, WindowKey

ANN, BOB = "+14155552671", "+14155550100"
START = 6_000.0
"""A window boundary for every window length used here (a multiple of 60 and of 10)."""
THREE_A_MINUTE = Window(count=3, seconds=60)


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def mo(sender: str = ANN, gateway_id: str = "sim") -> InboundSMS:
    return InboundSMS(gateway_id=gateway_id, sender=sender, recipient="12345", text="hi")


def counts(
    clock: Clock,
    *,
    per_sender: Window | None = THREE_A_MINUTE,
    per_gateway: Window | None = None,
    max_keys: int = 1000,
) -> LimitCounts:
    limits = InboundLimits(per_sender=per_sender, per_gateway=per_gateway)
    return LimitCounts({"sim": limits, "other": limits}, max_keys=max_keys, clock=clock)


def admitted(limits: LimitCounts, *messages: InboundSMS) -> bool:
    try:
        limits.admit(messages)
    except LimitExceeded:
        return False
    return True


def refusal(limits: LimitCounts, *messages: InboundSMS) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as caught:
        limits.admit(messages)
    return caught.value


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_default_is_ten_a_minute_per_sender_and_no_gateway_limit() -> None:
    assert InboundLimits() == InboundLimits(per_sender=Window(count=10, seconds=60))


@dataclass(frozen=True)
class PostsCase:
    id: str
    per_sender: Window | None
    per_gateway: Window | None
    posts: tuple[str, ...]
    """Senders, one post each, in order."""
    expected: tuple[bool, ...]


POSTS = (
    PostsCase("per-sender", Window(count=2, seconds=60), None, (ANN,) * 3, (True, True, False)),
    PostsCase(
        "another-sender-unaffected",
        Window(count=2, seconds=60),
        None,
        (ANN, ANN, ANN, BOB),
        (True, True, False, True),
    ),
    PostsCase("no-limit", None, None, (ANN,) * 50, (True,) * 50),
    PostsCase(
        "per-gateway-across-senders",
        None,
        Window(count=3, seconds=10),
        (ANN, BOB, ANN, BOB),
        (True, True, True, False),
    ),
    PostsCase(
        "both-first-reached-wins",
        Window(count=2, seconds=60),
        Window(count=3, seconds=10),
        (ANN, ANN, ANN, BOB, BOB),
        (True, True, False, True, False),
    ),
)


@pytest.mark.parametrize("case", POSTS, ids=[case.id for case in POSTS])
def test_posts_are_admitted_until_a_count_reaches_its_limit(case: PostsCase) -> None:
    limits = counts(Clock(), per_sender=case.per_sender, per_gateway=case.per_gateway)
    assert tuple(admitted(limits, mo(sender)) for sender in case.posts) == case.expected


def test_gateways_are_counted_apart() -> None:
    limits = counts(Clock(), per_sender=Window(count=1, seconds=60))
    assert admitted(limits, mo(ANN, "sim"))
    assert admitted(limits, mo(ANN, "other"))
    assert not admitted(limits, mo(ANN, "sim"))


@pytest.mark.parametrize(
    ("elapsed", "retry_after"),
    [(0.0, 60), (0.5, 60), (59.0, 1), (59.9, 1)],
    ids=["window-start", "rounded-up", "last-second", "never-zero"],
)
def test_a_refusal_is_429_retry_after_the_window_ends(elapsed: float, retry_after: int) -> None:
    clock = Clock()
    limits = counts(clock, per_sender=Window(count=1, seconds=60))
    clock.now = START + elapsed
    assert admitted(limits, mo())
    refused = refusal(limits, mo())
    assert (refused.status, refused.code, refused.limit) == (429, "rate_limited", "per_sender")
    assert refused.retry_after == retry_after
    assert refused.headers == {"Retry-After": str(retry_after)}
    assert "per_sender" in str(refused)
    assert "at most 1 SMS from one sender in 60 s" in str(refused)


def test_counts_start_over_at_the_window_boundary() -> None:
    clock = Clock(START + 59.999)
    limits = counts(clock, per_sender=Window(count=1, seconds=60))
    assert admitted(limits, mo())
    assert not admitted(limits, mo())
    clock.now = START + 60
    assert admitted(limits, mo())
    assert not admitted(limits, mo())


def test_refused_posts_are_not_counted() -> None:
    limits = counts(
        Clock(), per_sender=Window(count=1, seconds=60), per_gateway=Window(count=3, seconds=60)
    )
    assert admitted(limits, mo(ANN))
    assert not any(admitted(limits, mo(ANN)) for _ in range(5))
    assert admitted(limits, mo(BOB))
    assert admitted(limits, mo("+14155550101"))
    assert not admitted(limits, mo("+14155550102"))


def test_a_batch_is_admitted_whole_and_may_pass_the_limit_by_its_size() -> None:
    """Refusing a batch larger than the limit would refuse its every retry."""
    limits = counts(Clock(), per_sender=Window(count=2, seconds=60))
    assert admitted(limits, mo(ANN), mo(ANN), mo(ANN), mo(BOB))
    assert not admitted(limits, mo(BOB), mo(ANN))
    assert admitted(limits, mo(BOB))  # the refused batch counted nothing for BOB


def test_a_flood_logs_once_per_count_and_window_and_counts_every_refusal() -> None:
    clock = Clock()
    limits = counts(clock, per_sender=Window(count=1, seconds=60))
    before = sample("twoway_inbound_rate_limited_total", gateway="sim", limit="per_sender")
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            admitted(limits, mo())
        clock.now += 60
        for _ in range(3):
            admitted(limits, mo())
    warnings = [line for line in logs if line["event"] == "inbound_rate_limited"]
    assert len(warnings) == 2
    assert warnings[0]["sender"] == "+14*******71"
    assert ANN not in repr(logs)
    after = sample("twoway_inbound_rate_limited_total", gateway="sim", limit="per_sender")
    assert after - before == 4 + 2


def test_a_count_is_shared_from_its_second_mo_with_what_the_database_has_not() -> None:
    limits = counts(Clock(), per_sender=Window(count=10, seconds=60))
    limits.admit([mo(ANN)])
    assert limits.unwritten() == []  # one MO a window: no database write
    limits.admit([mo(ANN)])
    [item] = limits.unwritten()
    assert (item.key.sender, item.increment) == (ANN, 2)
    assert limits.unwritten() == []
    limits.written([item])
    limits.admit([mo(ANN)])
    [again] = limits.unwritten()
    assert again.increment == 1


def test_the_decision_adds_the_other_replicas_total_as_last_read() -> None:
    limits = counts(Clock(), per_sender=Window(count=5, seconds=60))
    limits.admit([mo(), mo()])
    batch = limits.unwritten()
    limits.written(batch)
    limits.admit([mo()])  # while the totals are being read: not in them
    [item] = batch
    limits.merge({item.key: 2 + 2})  # ours, and two from another replica
    assert item.entry.others == 2
    assert not admitted(limits, mo())  # 3 here + 2 elsewhere
    limits.merge({item.key: 3})  # an older answer
    assert item.entry.others == 2


@pytest.mark.parametrize(
    ("admissions", "others", "watched"),
    [(1, 0, False), (2, 0, False), (3, 0, True), (4, 0, True), (3, 2, True), (3, 3, False)],
    ids=["not-shared", "below-half", "half", "one-left", "others-counted", "reached"],
)
def test_shared_counts_within_reach_of_their_limit_are_watched(
    admissions: int, others: int, watched: bool
) -> None:
    """Their totals are read at every sync, so that the replica hears of the others' MO while
    it admits none; a count that reached its limit need not be read again (totals only grow)."""
    limits = counts(Clock(), per_sender=Window(count=6, seconds=60))
    for _ in range(admissions):
        limits.admit([mo()])
    for item in limits.unwritten():
        limits.written([item])
        limits.merge({item.key: admissions + others})
    assert (limits.watched() != []) == watched


def test_watched_counts_end_with_their_window() -> None:
    clock = Clock()
    limits = counts(clock, per_sender=Window(count=4, seconds=60))
    limits.admit([mo(), mo()])
    assert limits.watched() != []
    clock.now += 60
    limits.forget_ended()
    assert limits.watched() == []


def test_counts_not_written_wait_for_the_next_sync() -> None:
    limits = counts(Clock())
    limits.admit([mo(), mo()])
    batch = limits.unwritten()
    limits.admit([mo(BOB)])
    limits.not_written(batch)
    [item] = limits.unwritten()
    assert (item.key.sender, item.increment) == (ANN, 2)


def test_memory_holds_at_most_max_keys_and_keeps_the_flooding_sender() -> None:
    clock = Clock()
    limits = counts(clock, per_sender=Window(count=2, seconds=60), max_keys=100)
    before = sample("twoway_inbound_limit_evictions_total")
    assert admitted(limits, mo(ANN))
    assert admitted(limits, mo(ANN))
    for number in range(1_000):
        assert admitted(limits, mo(f"+1415555{number:04d}"))
        assert not admitted(limits, mo(ANN))  # a flooding sender stays recently used
    assert len(limits) == 100
    assert len(limits.unwritten()) == 1  # ANN's: one MO from each of the others stays local
    assert sample("twoway_inbound_limit_evictions_total") - before == 1_000 + 1 - 100


def test_a_count_dropped_from_memory_is_not_written_later() -> None:
    limits = counts(Clock(), max_keys=1)
    limits.admit([mo(ANN), mo(ANN)])
    batch = limits.unwritten()
    limits.admit([mo(BOB)])  # takes ANN's place
    limits.not_written(batch)
    assert limits.unwritten() == []


def test_ended_windows_are_forgotten() -> None:
    clock = Clock()
    limits = counts(clock, per_sender=Window(count=5, seconds=60), max_keys=1000)
    for sender in (ANN, BOB):
        limits.admit([mo(sender)])
    clock.now += 59
    limits.forget_ended()
    assert len(limits) == 2
    clock.now += 1
    limits.admit([mo(ANN)])
    limits.forget_ended()
    assert len(limits) == 1


def test_windows_are_numbered_from_the_epoch_on_every_replica() -> None:
    """Two replicas started at different times put an MO in the same window."""
    key = WindowKey("per_sender", "sim", ANN, 60, int(START // 60))
    assert key.ends_at == START + 60
    assert key.document_id() == WindowKey(*key).document_id()
    assert ANN not in key.document_id()
    assert key.document_id() != key._replace(number=key.number + 1).document_id()
