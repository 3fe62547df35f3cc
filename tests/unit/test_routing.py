"""The routing rules: one row per rule, then ordering, gateway scope, invalid filters and scale."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import re2
from pydantic import ValidationError

from twoway import routing
from twoway.messages import HandlerRegistration, InboundSMS
from twoway.routing import (
    REGEX_SET_SIZE,
    Filter,
    FilterError,
    RoutingTable,
)
from twoway.sdk import Adapter, HandlerContext


def sms(text: str = "hello", **overrides: Any) -> InboundSMS:
    fields: dict[str, Any] = {
        "gateway_id": "sim",
        "sender": "+14155552671",
        "recipient": "12345",
        "text": text,
    }
    fields.update(overrides)
    return InboundSMS(**fields)


def handler(
    name: str,
    filter: dict[str, Any] | None = None,
    *,
    priority: int = 0,
    sequence: int = 0,
    gateway_id: str | None = None,
) -> HandlerRegistration:
    return HandlerRegistration(
        adapter="test",
        handler=name,
        filter=filter or {},
        priority=priority,
        sequence=sequence,
        gateway_id=gateway_id,
    )


@dataclass(frozen=True)
class RuleCase:
    id: str
    filter: dict[str, Any]
    text: str
    matches: bool
    message: dict[str, Any] = field(default_factory=dict)


RULE_CASES = (
    # keyword: exact, case-insensitive; MobileFirst's {"keyword": "sub"} unchanged
    RuleCase("keyword-mobilefirst-first-word", {"keyword": "sub"}, "SUB me", True),
    RuleCase("keyword-mobilefirst-whole-text", {"keyword": "sub"}, "sub", True),
    RuleCase("keyword-upper-filter", {"keyword": "SUB"}, "sub me", True),
    RuleCase("keyword-filter-stripped", {"keyword": " Sub "}, "sub", True),
    RuleCase("keyword-prefix-is-not-a-match", {"keyword": "sub"}, "subscribe me", False),
    RuleCase("keyword-not-first-word", {"keyword": "sub"}, "please sub me", False),
    RuleCase("keyword-empty-text", {"keyword": "sub"}, "", False),
    RuleCase("keyword-from-gateway", {"keyword": "news"}, "hello", True, {"keyword": "News"}),
    # any-of: keyword aliases
    RuleCase("any-of-first-alias", {"keyword": ["join", "start"]}, "JOIN news", True),
    RuleCase("any-of-second-alias", {"keyword": ["join", "start"]}, "Start", True),
    RuleCase("any-of-no-alias", {"keyword": ["join", "start"]}, "stop", False),
    # regex: RE2 search, case-sensitive unless the pattern says otherwise
    RuleCase("regex-search-anywhere", {"text": {"regex": r"\bpizza\b"}}, "a pizza now", True),
    RuleCase("regex-word-boundary", {"text": {"regex": r"\bpizza\b"}}, "pizzas", False),
    RuleCase("regex-case-sensitive", {"text": {"regex": "pizza"}}, "PIZZA", False),
    RuleCase("regex-inline-flag", {"text": {"regex": "(?i)pizza"}}, "PIZZA", True),
    RuleCase("regex-anchored", {"text": {"regex": "^order [0-9]+$"}}, "order 42", True),
    RuleCase("regex-on-keyword", {"keyword": {"regex": "^J"}}, "join", True),
    # text: exact, case-insensitive, the whole text
    RuleCase("text-exact-case-insensitive", {"text": "hello world"}, "HELLO World", True),
    RuleCase("text-exact-is-whole-text", {"text": "hello"}, "hello world", False),
    # sender / recipient: exact, case-sensitive
    RuleCase("sender-exact", {"sender": "+14155552671"}, "x", True),
    RuleCase("sender-other", {"sender": "+14155550000"}, "x", False),
    RuleCase("recipient-exact", {"recipient": "Promo"}, "x", True, {"recipient": "Promo"}),
    RuleCase(
        "recipient-case-sensitive", {"recipient": "Promo"}, "x", False, {"recipient": "PROMO"}
    ),
    RuleCase("recipient-any-of", {"recipient": ["12345", "67890"]}, "x", True),
    RuleCase("gateway-id-field", {"gateway_id": "sim"}, "x", True),
    RuleCase("gateway-id-field-other", {"gateway_id": "kannel"}, "x", False),
    # raw gateway parameters
    RuleCase("param-exact", {"smsc": "vodafone"}, "x", True, {"params": {"smsc": "vodafone"}}),
    RuleCase("param-other-value", {"smsc": "vodafone"}, "x", False, {"params": {"smsc": "o2"}}),
    RuleCase(
        "param-case-sensitive", {"smsc": "Vodafone"}, "x", False, {"params": {"smsc": "vodafone"}}
    ),
    RuleCase(
        "param-regex", {"smsc": {"regex": "^voda"}}, "x", True, {"params": {"smsc": "vodafone"}}
    ),
    RuleCase("param-missing", {"smsc": "vodafone"}, "x", False),
    RuleCase("param-missing-regex-matches-anything", {"smsc": {"regex": ""}}, "x", False),
    # AND across keys
    RuleCase("and-all-match", {"keyword": "sub", "recipient": "12345"}, "sub", True),
    RuleCase("and-one-fails", {"keyword": "sub", "recipient": "99999"}, "sub", False),
    RuleCase(
        "and-three-keys",
        {"keyword": ["sub"], "sender": "+14155552671", "smsc": {"regex": "o2"}},
        "sub me",
        True,
        {"params": {"smsc": "o2-uk"}},
    ),
    # empty filter: catch-all
    RuleCase("empty-filter-catch-all", {}, "anything at all", True),
    RuleCase("empty-filter-empty-text", {}, "", True),
)


@pytest.mark.parametrize("case", RULE_CASES, ids=[case.id for case in RULE_CASES])
def test_rule(case: RuleCase) -> None:
    message = sms(case.text, **case.message)
    assert Filter.compile(case.filter).matches(message) is case.matches
    # the same answer through the table, which indexes exact keywords
    table = RoutingTable([handler("only", case.filter)])
    found = table.match(message)
    assert (found is not None) is case.matches
    if found is not None:
        assert found.handler == "only"


@dataclass(frozen=True)
class OrderCase:
    id: str
    handlers: tuple[HandlerRegistration, ...]
    message: InboundSMS
    expected: str | None


ORDER_CASES = (
    OrderCase(
        "higher-priority-first",
        (handler("low", {}, priority=0, sequence=1), handler("high", {}, priority=10, sequence=2)),
        sms("sub"),
        "high",
    ),
    OrderCase(
        "negative-priority-last",
        (handler("neg", {}, priority=-1, sequence=1), handler("zero", {}, sequence=2)),
        sms("x"),
        "zero",
    ),
    OrderCase(
        "same-priority-registration-order",
        (handler("second", {}, sequence=2), handler("first", {}, sequence=1)),
        sms("x"),
        "first",
    ),
    OrderCase(
        "first-match-wins-over-later-match",
        (
            handler("text", {"text": "sub me"}, sequence=1),
            handler("keyword", {"keyword": "sub"}, sequence=2),
        ),
        sms("sub me"),
        "text",
    ),
    OrderCase(
        "non-matching-high-priority-skipped",
        (
            handler("picky", {"keyword": "sub", "recipient": "99999"}, priority=10, sequence=1),
            handler("fallback", {}, sequence=2),
        ),
        sms("sub"),
        "fallback",
    ),
    OrderCase(
        "no-match",
        (handler("a", {"keyword": "stop"}, sequence=1), handler("b", {"text": "x"}, sequence=2)),
        sms("hello"),
        None,
    ),
    OrderCase("empty-table", (), sms("hello"), None),
    # keyword-indexed handlers merged with unindexed (regex / catch-all) handlers by rank
    OrderCase(
        "unindexed-higher-priority-beats-keyword",
        (
            handler("keyword", {"keyword": "sub"}, priority=1, sequence=1),
            handler("catch-all", {}, priority=5, sequence=2),
        ),
        sms("sub"),
        "catch-all",
    ),
    OrderCase(
        "keyword-higher-priority-beats-unindexed",
        (
            handler("catch-all", {}, priority=1, sequence=1),
            handler("keyword", {"keyword": "sub"}, priority=5, sequence=2),
        ),
        sms("sub"),
        "keyword",
    ),
    OrderCase(
        "unindexed-registered-first-wins-tie",
        (
            handler("keyword", {"keyword": "sub"}, sequence=2),
            handler("regex", {"text": {"regex": "^sub"}}, sequence=1),
        ),
        sms("sub"),
        "regex",
    ),
    OrderCase(
        "keyword-registered-first-wins-tie",
        (
            handler("keyword", {"keyword": "sub"}, sequence=1),
            handler("regex", {"text": {"regex": "^sub"}}, sequence=2),
        ),
        sms("sub"),
        "keyword",
    ),
    OrderCase(
        "interleaved-ranks",
        (
            handler("kw-a", {"keyword": "sub", "recipient": "0"}, priority=3, sequence=1),
            handler("re-b", {"text": {"regex": "nomatch"}}, priority=3, sequence=2),
            handler("kw-c", {"keyword": "sub", "recipient": "0"}, priority=2, sequence=3),
            handler("re-d", {"text": {"regex": "^sub"}}, priority=2, sequence=4),
            handler("kw-e", {"keyword": "sub"}, priority=2, sequence=5),
        ),
        sms("sub"),
        "re-d",
    ),
    OrderCase(
        "other-keyword-handlers-not-candidates",
        (handler("stop", {"keyword": "stop"}, priority=9, sequence=1), handler("any", {})),
        sms("sub"),
        "any",
    ),
    OrderCase(
        "alias-indexed-under-each-keyword",
        (
            handler("join", {"keyword": ["join", "start"]}, priority=1, sequence=1),
            handler("any", {}, sequence=2),
        ),
        sms("start now"),
        "join",
    ),
    # gateway scope, set on the registration
    OrderCase(
        "gateway-scope-other-gateway-skipped",
        (
            handler("kannel-only", {"keyword": "sub"}, gateway_id="kannel", priority=1),
            handler("any", {}, sequence=2),
        ),
        sms("sub", gateway_id="sim"),
        "any",
    ),
    OrderCase(
        "gateway-scope-same-gateway-matches",
        (
            handler("kannel-only", {"keyword": "sub"}, gateway_id="kannel", priority=1),
            handler("any", {}, sequence=2),
        ),
        sms("sub", gateway_id="kannel"),
        "kannel-only",
    ),
    OrderCase(
        "gateway-scope-with-empty-filter",
        (handler("kannel-all", {}, gateway_id="kannel"),),
        sms("sub", gateway_id="sim"),
        None,
    ),
)


@pytest.mark.parametrize("case", ORDER_CASES, ids=[case.id for case in ORDER_CASES])
def test_match_order(case: OrderCase) -> None:
    table = RoutingTable(case.handlers)
    assert len(table) == len(case.handlers)
    found = table.match(case.message)
    assert (found.handler if found else None) == case.expected


@dataclass(frozen=True)
class InvalidCase:
    id: str
    filter: dict[str, object]
    field: str


INVALID_CASES = (
    InvalidCase("unbalanced-paren", {"text": {"regex": "("}}, "text"),
    InvalidCase("backreference-unsupported-by-re2", {"text": {"regex": r"(a)\1"}}, "text"),
    InvalidCase("lookahead-unsupported-by-re2", {"sender": {"regex": "(?=x)"}}, "sender"),
    InvalidCase("empty-list", {"keyword": []}, "keyword"),
    InvalidCase("list-of-non-strings", {"keyword": ["sub", 5]}, "keyword"),
    InvalidCase("object-without-regex", {"smsc": {"pattern": "x"}}, "smsc"),
    InvalidCase("object-with-extra-key", {"smsc": {"regex": "x", "flags": "i"}}, "smsc"),
    InvalidCase("regex-not-a-string", {"smsc": {"regex": 5}}, "smsc"),
    InvalidCase("number", {"recipient": 5}, "recipient"),
    InvalidCase("null", {"recipient": None}, "recipient"),
    InvalidCase("second-key-at-fault", {"keyword": "sub", "text": {"regex": "["}}, "text"),
)


@pytest.mark.parametrize("case", INVALID_CASES, ids=[case.id for case in INVALID_CASES])
def test_invalid_filter(case: InvalidCase) -> None:
    with pytest.raises(FilterError) as caught:
        Filter.compile(case.filter)
    assert caught.value.field == case.field
    assert repr(case.field) in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_table_rejects_a_registration_with_an_invalid_filter() -> None:
    with pytest.raises(FilterError) as caught:
        RoutingTable([handler("ok", {}), handler("bad", {"text": {"regex": "("}}, sequence=1)])
    assert caught.value.field == "text"


def test_hostile_regex_returns() -> None:
    # catastrophic backtracking for a backtracking engine; linear for RE2
    hostile = Filter.compile({"text": {"regex": "(a+)+$"}})
    assert hostile.matches(sms("a" * 100_000 + "b")) is False
    assert hostile.matches(sms("a" * 100_000)) is True


def test_ten_thousand_keyword_handlers() -> None:
    handlers = [
        handler(f"h{index}", {"keyword": f"kw{index}"}, sequence=index + 1)
        for index in range(10_000)
    ]
    handlers.append(handler("fallback", {}, priority=-1, sequence=20_000))
    table = RoutingTable(handlers)
    assert len(table) == 10_001
    for index in (0, 7_777, 9_999):
        found = table.match(sms(f"KW{index} hello"))
        assert found is not None
        assert found.handler == f"h{index}"
    unknown = table.match(sms("kw10000"))
    assert unknown is not None
    assert unknown.handler == "fallback"


SELF_MATCH_TEXTS = (
    ("ascii", "sub"),
    ("mixed-case", "Sub Me"),
    ("sharp-s-lower", "straße"),
    ("titlecase-digraph", "ǅemal"),
    ("greek", "Θέση"),
    ("accented", "Café au lait"),
)


@pytest.mark.parametrize(
    "text", [case[1] for case in SELF_MATCH_TEXTS], ids=[case[0] for case in SELF_MATCH_TEXTS]
)
def test_filter_equal_to_the_message_matches_through_the_table(text: str) -> None:
    """A keyword filter equal to the SMS's first word, or a text filter equal to its whole text,
    matches: in the filter itself and through the keyword index of the table alike."""
    message = sms(text)
    first_word = text.split()[0]
    for spec in ({"keyword": first_word}, {"keyword": [first_word]}, {"text": text}):
        assert Filter.compile(spec).matches(message), spec
        found = RoutingTable([handler("only", spec)]).match(message)
        assert found is not None, spec


@pytest.mark.parametrize(
    "text",
    ["İPTAL", "STRAẞE", "ϴΕΣΗ"],
    ids=["turkish-dotted-capital-i", "capital-sharp-s", "greek-capital-theta-symbol"],
)
def test_keyword_index_agrees_with_the_filter(text: str) -> None:
    message = sms(text)
    spec = {"keyword": text}
    assert Filter.compile(spec).matches(message)
    assert RoutingTable([handler("only", spec)]).match(message) is not None


@pytest.mark.parametrize("text", ["yes ", " yes"], ids=["trailing-space", "leading-space"])
def test_text_filter_equal_to_a_padded_text_matches(text: str) -> None:
    assert Filter.compile({"text": text}).matches(sms(text))


INDEX_CASES = (
    # Which index finds a handler must never change which handler wins.
    OrderCase(
        "regex-handlers-in-rank-order",
        (
            handler("late", {"text": {"regex": "pizza"}}, sequence=2),
            handler("early", {"text": {"regex": "^a"}}, sequence=1),
        ),
        sms("a pizza"),
        "early",
    ),
    OrderCase(
        "regex-priority-beats-registration-order",
        (
            handler("first", {"text": {"regex": "^a"}}, sequence=1),
            handler("urgent", {"text": {"regex": "pizza"}}, priority=5, sequence=2),
        ),
        sms("a pizza"),
        "urgent",
    ),
    OrderCase(
        "regex-hit-whose-other-key-fails-is-skipped",
        (
            handler("picky", {"text": {"regex": "^a"}, "recipient": "0"}, sequence=1),
            handler("plain", {"text": {"regex": "pizza"}}, sequence=2),
        ),
        sms("a pizza"),
        "plain",
    ),
    OrderCase(
        "regex-on-a-parameter",
        (handler("voda", {"smsc": {"regex": "^voda"}}),),
        sms("x", params={"smsc": "vodafone"}),
        "voda",
    ),
    OrderCase(
        "regex-on-a-missing-parameter",
        (handler("voda", {"smsc": {"regex": ""}}),),
        sms("x"),
        None,
    ),
    OrderCase(
        "exact-sender-indexed",
        (
            handler("vip", {"sender": "+14155552671"}, sequence=1),
            handler("other", {"sender": "+14155550000"}, sequence=2),
        ),
        sms("x"),
        "vip",
    ),
    OrderCase(
        "exact-text-indexed-case-insensitive",
        (handler("hi", {"text": "Hello There"}),),
        sms("HELLO there"),
        "hi",
    ),
    OrderCase(
        "exact-parameter-indexed-case-sensitive",
        (handler("o2", {"smsc": "O2"}),),
        sms("x", params={"smsc": "o2"}),
        None,
    ),
    OrderCase(
        "keyword-index-preferred-over-regex-on-the-same-handler",
        (handler("both", {"text": {"regex": "^nope"}, "keyword": "sub"}),),
        sms("sub"),
        None,
    ),
    OrderCase(
        "gateway-only-handler",
        (handler("kannel", {}, gateway_id="kannel", sequence=1), handler("any", {}, sequence=2)),
        sms("x", gateway_id="kannel"),
        "kannel",
    ),
    OrderCase(
        "catch-all-beats-lower-ranked-regex-and-keyword",
        (
            handler("keyword", {"keyword": "sub"}, sequence=3),
            handler("regex", {"text": {"regex": "sub"}}, sequence=2),
            handler("catch-all", {}, sequence=1),
        ),
        sms("sub"),
        "catch-all",
    ),
)


@pytest.mark.parametrize("case", INDEX_CASES, ids=[case.id for case in INDEX_CASES])
def test_indexed_match_order(case: OrderCase) -> None:
    found = RoutingTable(case.handlers).match(case.message)
    assert (found.handler if found else None) == case.expected


def numbered_regex_handlers(count: int) -> list[HandlerRegistration]:
    return [
        handler(f"r{index}", {"text": {"regex": f"^order {index}$"}}, sequence=index)
        for index in range(count)
    ]


def test_regexes_beyond_one_set_are_all_found() -> None:
    count = REGEX_SET_SIZE * 2 + 3
    table = RoutingTable(numbered_regex_handlers(count))
    for index in (0, REGEX_SET_SIZE - 1, REGEX_SET_SIZE, count - 1):
        found = table.match(sms(f"order {index}"))
        assert found is not None
        assert found.handler == f"r{index}"
    assert table.match(sms(f"order {count}")) is None


def test_a_regex_set_too_big_for_its_memory_budget_still_finds_every_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RE2 matches nothing when a set's automaton does not fit its memory budget; the index
    notices (its sentinel does not match) and splits the set down to patterns searched alone."""
    starved = re2.Options()
    starved.max_mem = 1 << 10
    monkeypatch.setattr(routing, "REGEX_SET_OPTIONS", starved)
    table = RoutingTable(numbered_regex_handlers(40))
    for index in (0, 17, 39):
        found = table.match(sms(f"order {index}"))
        assert found is not None
        assert found.handler == f"r{index}"


def test_a_handler_is_found_by_name() -> None:
    table = RoutingTable([handler("a", {"keyword": "x"}), handler("b", {})])
    found = table.registration("test", "a")
    assert found is not None
    assert found.filter == {"keyword": "x"}
    assert table.registration("test", "missing") is None
    assert table.registration("other", "a") is None


@pytest.mark.parametrize(
    ("filter", "location"),
    [
        ({"keyword": 5}, ("filter", "keyword")),
        ({"keyword": [5]}, ("filter", "keyword")),
        ({"smsc": {"regex": 5}}, ("filter", "smsc")),
    ],
    ids=["number", "list-of-numbers", "regex-number"],
)
def test_a_registration_of_the_wrong_shape_names_the_field(
    filter: dict[str, Any], location: tuple[str, str]
) -> None:
    """Values of the wrong JSON type are refused by the contract itself, naming the field."""
    with pytest.raises(ValidationError) as caught:
        HandlerRegistration(adapter="test", handler="h", filter=filter)
    assert all(error["loc"][:2] == location for error in caught.value.errors())
    assert f"filter.{location[1]}" in str(caught.value)


def test_the_sdk_refuses_an_invalid_filter_where_the_handler_is_declared() -> None:
    adapter = Adapter("test")

    async def broken(context: HandlerContext) -> None:
        del context

    with pytest.raises(FilterError) as caught:
        adapter.handler({"keyword": "ok", "text": {"regex": "(unclosed"}})(broken)
    assert caught.value.field == "text"
    assert "missing )" in str(caught.value)
    assert adapter.registrations == []
