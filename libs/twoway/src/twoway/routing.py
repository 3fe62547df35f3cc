"""The routing decision: which registered handler takes an inbound SMS. Pure: no I/O.

A filter maps field names to matchers and matches when every matcher does (AND). Fields are
`keyword`, `text`, `sender`, `recipient`, `gateway_id`, or any raw gateway parameter. A matcher is
a string (exact; case-insensitive for `keyword` and `text`), a list of strings (any of them) or
`{"regex": "..."}` (a search with RE2, which runs in linear time, so a user's pattern can never
hang the router). Handlers are tried by priority (high first), then registration order; the first
match wins; an empty filter matches everything. MobileFirst's `{"keyword": "sub"}` works unchanged.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import re2

from twoway.messages import HandlerRegistration, InboundSMS

MESSAGE_FIELDS = frozenset({"keyword", "text", "sender", "recipient", "gateway_id"})
CASE_INSENSITIVE_FIELDS = frozenset({"keyword", "text"})


class FilterError(ValueError):
    """An invalid filter; `field` names the filter key at fault."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"filter field {field_name!r}: {problem}")
        self.field = field_name


def fold(value: str) -> str:
    """The form in which case-insensitive fields compare: stripped and case-folded."""
    return value.strip().casefold()


class Matcher(Protocol):
    def matches(self, value: str) -> bool: ...


@dataclass(frozen=True)
class Exact:
    value: str
    case_insensitive: bool

    def matches(self, value: str) -> bool:
        return (fold(value) if self.case_insensitive else value) == self.value


@dataclass(frozen=True)
class AnyOf:
    values: frozenset[str]
    case_insensitive: bool

    def matches(self, value: str) -> bool:
        return (fold(value) if self.case_insensitive else value) in self.values


@dataclass(frozen=True)
class Regex:
    pattern: str
    compiled: re2._Regexp = field(compare=False, repr=False)

    def matches(self, value: str) -> bool:
        return self.compiled.search(value) is not None


def compile_matcher(field_name: str, spec: object) -> Matcher:
    """A matcher from its JSON form; `FilterError` naming the field when the form is wrong."""
    folded = field_name in CASE_INSENSITIVE_FIELDS
    if isinstance(spec, str):
        return Exact(fold(spec) if folded else spec, folded)
    if isinstance(spec, list):
        if not spec or not all(isinstance(item, str) for item in spec):
            raise FilterError(field_name, "a list matcher must be a non-empty list of strings")
        values = [fold(item) if folded else item for item in spec]
        return AnyOf(frozenset(values), folded)
    if isinstance(spec, Mapping):
        if set(spec) != {"regex"} or not isinstance(spec["regex"], str):
            raise FilterError(field_name, 'an object matcher must be {"regex": "<pattern>"}')
        try:
            compiled = re2.compile(spec["regex"])
        except re2.error as error:
            raise FilterError(field_name, f"invalid regex: {error}") from error
        return Regex(spec["regex"], compiled)
    raise FilterError(
        field_name, 'a matcher must be a string, a list of strings or {"regex": "<pattern>"}'
    )


def field_value(message: InboundSMS, field_name: str) -> str | None:
    """The value a filter field reads: a message field, else a raw gateway parameter."""
    if field_name in MESSAGE_FIELDS:
        value: str = getattr(message, field_name)
        return value
    return message.params.get(field_name)


@dataclass(frozen=True)
class Filter:
    matchers: tuple[tuple[str, Matcher], ...]

    @classmethod
    def compile(cls, spec: Mapping[str, object], gateway_id: str | None = None) -> Filter:
        matchers = [(name, compile_matcher(name, value)) for name, value in spec.items()]
        if gateway_id is not None:
            matchers.append(("gateway_id", Exact(gateway_id, case_insensitive=False)))
        return cls(tuple(matchers))

    def matches(self, message: InboundSMS) -> bool:
        for name, matcher in self.matchers:
            value = field_value(message, name)
            if value is None or not matcher.matches(value):
                return False
        return True

    def keywords(self) -> frozenset[str] | None:
        """The (folded) keywords this filter requires, or None if it takes any keyword."""
        for name, matcher in self.matchers:
            if name == "keyword" and isinstance(matcher, Exact):
                return frozenset({matcher.value})
            if name == "keyword" and isinstance(matcher, AnyOf):
                return matcher.values
        return None


def validate_registration(registration: HandlerRegistration) -> Filter:
    """The compiled filter of `registration`; raises `FilterError` if it is invalid."""
    return Filter.compile(registration.filter, registration.gateway_id)


@dataclass(frozen=True, order=True)
class Route:
    rank: tuple[int, int]
    registration: HandlerRegistration = field(compare=False)
    filter: Filter = field(compare=False)


class RoutingTable:
    """Registered handlers in match order, with an index by keyword.

    Handlers whose filter names exact keywords are found through the index; the others (regex or
    no keyword) are always candidates. Both candidate lists are kept in rank order and merged
    lazily, so a match costs a dictionary look-up plus the few handlers that could apply.
    """

    def __init__(self, registrations: Iterable[HandlerRegistration]) -> None:
        routes = sorted(
            Route((-item.priority, item.sequence), item, validate_registration(item))
            for item in registrations
        )
        self._by_keyword: dict[str, list[Route]] = {}
        self._unindexed: list[Route] = []
        for route in routes:
            keywords = route.filter.keywords()
            if keywords is None:
                self._unindexed.append(route)
            else:
                for keyword in keywords:
                    self._by_keyword.setdefault(keyword, []).append(route)
        self._size = len(routes)

    def __len__(self) -> int:
        return self._size

    def match(self, message: InboundSMS) -> HandlerRegistration | None:
        keyed = self._by_keyword.get(fold(message.keyword), [])
        candidates = heapq.merge(keyed, self._unindexed) if self._unindexed else iter(keyed)
        for route in candidates:
            if route.filter.matches(message):
                return route.registration
        return None
