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


Matcher = Exact | AnyOf | Regex


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


def validate_registration(registration: HandlerRegistration) -> Filter:
    """The compiled filter of `registration`; raises `FilterError` if it is invalid."""
    return Filter.compile(registration.filter, registration.gateway_id)


@dataclass(frozen=True, order=True)
class Route:
    rank: tuple[int, int]
    registration: HandlerRegistration = field(compare=False)
    filter: Filter = field(compare=False)


def index_matcher(compiled: Filter) -> tuple[str, Matcher] | None:
    """The matcher a route is indexed by: the most selective one that an index can look up.

    An exact keyword first, then an exact value of another field, then a regex, then the gateway
    (many handlers share one); None for a catch-all, which is a candidate for every SMS.
    """

    def preference(item: tuple[str, Matcher]) -> int:
        name, matcher = item
        if isinstance(matcher, Regex):
            return 2
        if name == "gateway_id":
            return 3
        return 0 if name == "keyword" else 1

    return min(compiled.matchers, key=preference, default=None)


REGEX_SET_SIZE = 256
"""Patterns per RE2 set: small enough that a set always compiles within RE2's memory budget."""

REGEX_SET_OPTIONS = re2.Options()
REGEX_SET_OPTIONS.max_mem = 64 << 20


class RegexIndex:
    """The regex matchers of one field, searched in a single pass per RE2 set.

    Each set starts with a sentinel pattern that matches the empty string: if RE2 could not build
    a set's automaton within its memory budget, the set would silently match nothing, so a set
    whose sentinel does not match is split in two until its parts work. A single pattern that
    still fails (never seen in practice) is searched on its own.
    """

    def __init__(self, routes: list[tuple[Route, Regex]]) -> None:
        self._sets: list[tuple[re2.Set, list[Route]]] = []
        self._single: list[tuple[Route, Regex]] = []
        for start in range(0, len(routes), REGEX_SET_SIZE):
            self._add(routes[start : start + REGEX_SET_SIZE])

    def _add(self, routes: list[tuple[Route, Regex]]) -> None:
        regex_set = re2.Set.SearchSet(REGEX_SET_OPTIONS)
        regex_set.Add(r"\A\z")
        try:
            for _, regex in routes:
                regex_set.Add(regex.pattern)
            regex_set.Compile()
            working = regex_set.Match("") is not None
        except re2.error:
            working = False
        if working:
            self._sets.append((regex_set, [route for route, _ in routes]))
        elif len(routes) > 1:
            half = len(routes) // 2
            self._add(routes[:half])
            self._add(routes[half:])
        else:
            self._single.extend(routes)

    def candidates(self, value: str) -> list[Route]:
        """The routes whose indexed regex finds a match in `value`, in rank order."""
        found: list[Route] = []
        for regex_set, routes in self._sets:
            hits = regex_set.Match(value)
            if hits is not None:
                found.extend(routes[hit - 1] for hit in hits if hit)
        found.extend(route for route, regex in self._single if regex.matches(value))
        found.sort()
        return found


class RoutingTable:
    """Registered handlers in match order, indexed so that a match never scans every handler.

    Each handler is indexed by one of its matchers (`index_matcher`): an exact value is found by a
    dictionary look-up of the SMS's field, regexes of one field are searched together with RE2
    sets, and only catch-alls are candidates for every SMS. The candidate lists are each in rank
    order and merged lazily; the first candidate whose whole filter matches wins.
    """

    def __init__(self, registrations: Iterable[HandlerRegistration]) -> None:
        routes = sorted(
            Route((-item.priority, item.sequence), item, validate_registration(item))
            for item in registrations
        )
        self._exact: dict[str, dict[str, list[Route]]] = {}
        regexes: dict[str, list[tuple[Route, Regex]]] = {}
        self._unindexed: list[Route] = []
        self._by_name: dict[tuple[str, str], HandlerRegistration] = {}
        for route in routes:
            registration = route.registration
            self._by_name[(registration.adapter, registration.handler)] = registration
            indexed = index_matcher(route.filter)
            if indexed is None:
                self._unindexed.append(route)
                continue
            name, matcher = indexed
            if isinstance(matcher, Regex):
                regexes.setdefault(name, []).append((route, matcher))
                continue
            values = matcher.values if isinstance(matcher, AnyOf) else {matcher.value}
            index = self._exact.setdefault(name, {})
            for value in values:
                index.setdefault(value, []).append(route)
        self._regex = {name: RegexIndex(items) for name, items in regexes.items()}
        self._size = len(routes)

    def __len__(self) -> int:
        return self._size

    def registration(self, adapter: str, handler: str) -> HandlerRegistration | None:
        """The registered handler `handler` of `adapter`, if there is one."""
        return self._by_name.get((adapter, handler))

    def _candidate_lists(self, message: InboundSMS) -> list[list[Route]]:
        lists = [self._unindexed] if self._unindexed else []
        for name, index in self._exact.items():
            value = field_value(message, name)
            if value is not None:
                found = index.get(fold(value) if name in CASE_INSENSITIVE_FIELDS else value)
                if found:
                    lists.append(found)
        for name, regex_index in self._regex.items():
            value = field_value(message, name)
            if value is not None:
                found = regex_index.candidates(value)
                if found:
                    lists.append(found)
        return lists

    def match(self, message: InboundSMS) -> HandlerRegistration | None:
        lists = self._candidate_lists(message)
        candidates = lists[0] if len(lists) == 1 else heapq.merge(*lists)
        for route in candidates:
            if route.filter.matches(message):
                return route.registration
        return None
