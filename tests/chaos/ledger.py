"""The crash test's bookkeeping, pure: from what the harness posted and what the gateway
simulator received, per kill, what was lost, what came twice and how long recovery took.

A message is known by its (recipient, text) pair: every MO has its own sender and text, so its
reply has a pair of its own, and so has every api send and every subscriber's broadcast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Key = tuple[str, str]
"""(recipient, text) of a message the gateway should receive exactly once."""

Entry = Literal["ingress", "api"]
EXAMPLES = 3


@dataclass(frozen=True)
class Targets:
    """Seconds from a restart to the first 2xx and to the first reply, at most."""

    service: float = 5.0
    broker: float = 10.0


@dataclass(frozen=True)
class Delivery:
    """One MT the gateway simulator recorded."""

    to: str
    text: str
    at: float
    """When it arrived (epoch seconds)."""


@dataclass(frozen=True)
class MO:
    """One MO the harness posted to ingress, as a gateway does (retrying until a 2xx)."""

    reply: Key
    """The reply it asks for."""
    first_posted: float
    accepted_at: float | None
    """When ingress answered it 2xx; None: never (still retrying when the run ended)."""


@dataclass(frozen=True)
class Expected:
    """Messages besides MO replies that a phase must see delivered exactly once (a broadcast's
    subscribers, the api's sends)."""

    label: str
    keys: frozenset[Key]
    accepted_at: tuple[float, ...] = ()
    """When the entry point answered each request 2xx (the api's sends)."""


@dataclass(frozen=True)
class Phase:
    """What happened from one kill to the next (or the steady load before the first kill)."""

    name: str
    started_at: float
    """The kill (SIGKILL sent), or the load's start."""
    restarted_at: float | None = None
    """When the supervisor started the killed process again; None: nothing was killed."""
    broker: bool = False
    entry: Entry = "ingress"
    """Whose first 2xx after the restart counts: ingress's (MO) or the api's (sends)."""
    expected: Expected | None = None


@dataclass(frozen=True)
class PhaseReport:
    phase: Phase
    target: float | None
    accepted: int
    not_accepted: int
    """MO still refused when the run ended (a gateway would have given up)."""
    unanswered: int
    duplicated: int
    """Replies whose second copy arrived after this kill and before the next."""
    first_2xx: float | None
    """Seconds from the restart to the first 2xx answered after it."""
    first_reply: float | None
    """Seconds from the restart to the first reply to an MO posted after the kill (0: replies
    never stopped)."""
    expected: int = 0
    missing: int = 0
    expected_duplicated: int = 0
    examples: tuple[Key, ...] = ()
    """A few of the messages lost or sent twice, to look up in the logs."""

    @property
    def problems(self) -> list[str]:
        found = []
        if self.not_accepted:
            found.append(f"{self.not_accepted} MO never accepted")
        if self.unanswered:
            found.append(f"{self.unanswered} accepted MO never answered")
        if self.duplicated:
            found.append(f"{self.duplicated} replies sent more than once")
        if self.phase.expected is not None:
            label = self.phase.expected.label
            if self.missing:
                found.append(f"{self.missing} {label} never sent")
            if self.expected_duplicated:
                found.append(f"{self.expected_duplicated} {label} sent more than once")
        if self.target is not None:
            for what, seconds in (("first 2xx", self.first_2xx), ("first reply", self.first_reply)):
                if seconds is None:
                    found.append(f"no {what} after the restart")
                elif seconds > self.target:
                    found.append(
                        f"{what} {seconds:.1f} s after the restart (target {self.target:g} s)"
                    )
        return found


def received(deliveries: Iterable[Delivery]) -> dict[Key, list[float]]:
    """When each (recipient, text) arrived, in order."""
    arrivals: dict[Key, list[float]] = {}
    for delivery in deliveries:
        arrivals.setdefault((delivery.to, delivery.text), []).append(delivery.at)
    for times in arrivals.values():
        times.sort()
    return arrivals


def report_phase(
    phase: Phase,
    ended_at: float,
    copies_until: float,
    mos: Sequence[MO],
    arrivals: Mapping[Key, list[float]],
    targets: Targets,
) -> PhaseReport:
    """Count the MO first posted from `phase.started_at` up to `ended_at` (the next kill), and
    the replies whose second copy arrived from then up to `copies_until`: the kill before a
    copy caused it."""
    mine = [mo for mo in mos if phase.started_at <= mo.first_posted < ended_at]
    accepted = [mo for mo in mine if mo.accepted_at is not None]
    target: float | None = None
    first_2xx = first_reply = None
    if phase.restarted_at is not None:
        restarted = phase.restarted_at
        target = targets.broker if phase.broker else targets.service
        if phase.entry == "api" and phase.expected is not None:
            answers: Iterable[float] = phase.expected.accepted_at
        else:
            answers = (mo.accepted_at for mo in accepted if mo.accepted_at is not None)
        after = [answer for answer in answers if answer >= restarted]
        first_2xx = min(after) - restarted if after else None
        replies = [arrivals[mo.reply][0] for mo in accepted if mo.reply in arrivals]
        first_reply = max(0.0, min(replies) - restarted) if replies else None
    unanswered = [mo.reply for mo in accepted if mo.reply not in arrivals]
    duplicated = [
        mo.reply
        for mo in mos
        if len(times := arrivals.get(mo.reply, [])) > 1
        and phase.started_at <= times[1] < copies_until
    ]
    expected = phase.expected
    missing = [key for key in sorted(expected.keys) if key not in arrivals] if expected else []
    twice = (
        [key for key in sorted(expected.keys) if len(arrivals.get(key, [])) > 1] if expected else []
    )
    return PhaseReport(
        phase=phase,
        target=target,
        accepted=len(accepted),
        not_accepted=len(mine) - len(accepted),
        unanswered=len(unanswered),
        duplicated=len(duplicated),
        first_2xx=first_2xx,
        first_reply=first_reply,
        expected=len(expected.keys) if expected else 0,
        missing=len(missing),
        expected_duplicated=len(twice),
        examples=tuple((unanswered + duplicated + missing + twice)[:EXAMPLES]),
    )


def report(
    phases: Sequence[Phase],
    ended_at: float,
    mos: Sequence[MO],
    deliveries: Iterable[Delivery],
    targets: Targets,
) -> list[PhaseReport]:
    """One report per phase; phases in the order they happened, each ending at the next (the
    last one at `ended_at` for the MO it counts, never for the copies that arrive later)."""
    arrivals = received(deliveries)
    ends = [phase.started_at for phase in phases[1:]]
    return [
        report_phase(phase, end, copies_until, mos, arrivals, targets)
        for phase, end, copies_until in zip(
            phases, [*ends, ended_at], [*ends, math.inf], strict=True
        )
    ]


_COLUMNS = (
    ("kill", 26),
    ("accepted", 8),
    ("refused", 7),
    ("unanswered", 10),
    ("dup replies", 11),
    ("first 2xx", 9),
    ("first reply", 11),
    ("target", 6),
    ("other: sent/missing/dup", 30),
    ("verdict", 7),
)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _row(cells: Sequence[str]) -> str:
    return "  ".join(
        cell.ljust(width) if index == 0 else cell.rjust(width)
        for index, (cell, (_, width)) in enumerate(zip(cells, _COLUMNS, strict=True))
    ).rstrip()


def table(reports: Sequence[PhaseReport], targets: Targets) -> str:
    """The table the harness prints, its targets above it and every problem below it."""
    lines = [
        f"recovery targets: the first 2xx and the first reply within {targets.service:g} s of a "
        f"service's restart, {targets.broker:g} s of the broker's; no loss, no duplicate",
        _row([name for name, _ in _COLUMNS]),
    ]
    for item in reports:
        other = "-"
        if item.phase.expected is not None:
            other = (
                f"{item.phase.expected.label} {item.expected}/{item.missing}/"
                f"{item.expected_duplicated}"
            )
        lines.append(
            _row(
                [
                    item.phase.name,
                    str(item.accepted),
                    str(item.not_accepted),
                    str(item.unanswered),
                    str(item.duplicated),
                    _seconds(item.first_2xx) if item.target is not None else "-",
                    _seconds(item.first_reply) if item.target is not None else "-",
                    "-" if item.target is None else f"{item.target:g} s",
                    other,
                    "FAIL" if item.problems else "ok",
                ]
            )
        )
    for item in reports:
        lines.extend(f"FAIL {item.phase.name}: {problem}" for problem in item.problems)
        if item.examples:
            examples = ", ".join(f"{text!r} to {to}" for to, text in item.examples)
            lines.append(f"FAIL {item.phase.name}: lost or sent twice, e.g. {examples}")
    return "\n".join(lines)
