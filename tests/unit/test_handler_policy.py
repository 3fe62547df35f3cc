"""The handler failure policy and the back-end client's pure rules."""

from __future__ import annotations

import pytest

from twoway.broker import Reject
from twoway.consumed import read_delivery
from twoway.conversations import ConversationRef, answered_conversation, conversation_key
from twoway.handler_policy import GiveUp, HandlerTimedOut, RetryLater, decide
from twoway.messages import InboundSMS
from twoway.sdk_http import BackendError, forwarded_headers, may_retry, readable, resolve_url

DELAYS = (5, 30, 120)

DECISIONS = [
    ("first-failure-waits-first-step", RuntimeError("boom"), 1, 4, RetryLater(5, 2)),
    ("second-failure-waits-second-step", RuntimeError("boom"), 2, 4, RetryLater(30, 3)),
    ("last-step-repeats", RuntimeError("boom"), 3, 9, RetryLater(120, 4)),
    ("beyond-steps-capped", RuntimeError("boom"), 7, 9, RetryLater(120, 8)),
    ("timeout-is-retried", HandlerTimedOut("timed out"), 1, 4, RetryLater(5, 2)),
    ("backend-down-is-retried", BackendError("refused"), 1, 4, RetryLater(5, 2)),
    ("backend-503-is-retried", BackendError("busy", status=503), 1, 4, RetryLater(5, 2)),
    ("backend-429-is-retried", BackendError("slow down", status=429), 1, 4, RetryLater(5, 2)),
    (
        "last-attempt-gives-up",
        RuntimeError("boom"),
        4,
        4,
        GiveUp("failed 4 time(s); last: RuntimeError: boom"),
    ),
    ("one-attempt-only", HandlerTimedOut("late"), 1, 1, GiveUp("failed 1 time(s); last: late")),
    ("reject-gives-up-at-once", Reject("no such account"), 1, 4, GiveUp("no such account")),
    (
        "backend-refusal-gives-up-at-once",
        BackendError("GET x answered 404", status=404),
        1,
        4,
        GiveUp("BackendError: GET x answered 404"),
    ),
]


@pytest.mark.parametrize(
    ("error", "attempt", "max_attempts", "expected"),
    [case[1:] for case in DECISIONS],
    ids=[case[0] for case in DECISIONS],
)
def test_decide(
    error: Exception, attempt: int, max_attempts: int, expected: RetryLater | GiveUp
) -> None:
    assert decide(error, attempt, max_attempts, DELAYS) == expected


RETRYABLE = [
    ("no-answer", None, True),
    ("timeout-408", 408, True),
    ("too-many-429", 429, True),
    ("server-500", 500, True),
    ("bad-gateway-502", 502, True),
    ("unavailable-503", 503, True),
    ("bad-request-400", 400, False),
    ("forbidden-403", 403, False),
    ("not-found-404", 404, False),
    ("unprocessable-422", 422, False),
    ("not-implemented-501", 501, False),
]


@pytest.mark.parametrize(
    ("status", "retryable"),
    [case[1:] for case in RETRYABLE],
    ids=[case[0] for case in RETRYABLE],
)
def test_backend_error_retryable(status: int | None, retryable: bool) -> None:
    assert BackendError("x", status=status).retryable is retryable


METHODS = [
    ("get", "GET", None, True),
    ("get-lower-case", "get", None, True),
    ("head", "HEAD", None, True),
    ("options", "OPTIONS", None, True),
    ("put", "PUT", None, True),
    ("delete", "DELETE", None, True),
    ("post", "POST", None, False),
    ("patch", "PATCH", None, False),
    ("post-with-idempotency-key", "POST", True, True),
    ("get-declared-unsafe", "GET", False, False),
]


@pytest.mark.parametrize(
    ("method", "idempotent", "expected"),
    [case[1:] for case in METHODS],
    ids=[case[0] for case in METHODS],
)
def test_only_idempotent_calls_are_retried(
    method: str, idempotent: bool | None, expected: bool
) -> None:
    assert may_retry(method, idempotent) is expected


URLS = [
    (
        "relative-under-base-path",
        "http://b:1/backend/",
        "accounts/x",
        "http://b:1/backend/accounts/x",
    ),
    ("base-without-slash", "http://b:1/backend", "accounts/x", "http://b:1/backend/accounts/x"),
    ("leading-slash-stays-under-base", "http://b:1/api", "/x", "http://b:1/api/x"),
    ("absolute-ignores-base", "http://b:1/api/", "https://other/y", "https://other/y"),
    ("no-base", "", "http://c/z", "http://c/z"),
    ("query-kept", "http://b/api/", "x?y=1", "http://b/api/x?y=1"),
]


@pytest.mark.parametrize(
    ("base", "url", "expected"), [case[1:] for case in URLS], ids=[case[0] for case in URLS]
)
def test_resolve_url(base: str, url: str, expected: str) -> None:
    assert resolve_url(base, url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://b/accounts/%2B15551234567/x", "http://b/accounts/+15551234567/x"),
        ("http://b/plain?q=1", "http://b/plain?q=1"),
    ],
    ids=["escaped-phone-decoded", "plain-unchanged"],
)
def test_urls_in_messages_are_readable_so_phone_numbers_get_masked(url: str, expected: str) -> None:
    assert readable(url) == expected


TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
HEADERS = [
    (
        "ids-only",
        {"message_id": "m1"},
        {"X-Twoway-Message-Id": "m1", "X-Correlation-Id": "m1"},
    ),
    (
        "correlation-kept",
        {"message_id": "m2", "correlation_id": "c1"},
        {"X-Twoway-Message-Id": "m2", "X-Correlation-Id": "c1"},
    ),
    (
        "w3c-trace-forwarded",
        {"message_id": "m3", "trace": {"traceparent": TRACE, "tracestate": "a=b", "other": "x"}},
        {
            "X-Twoway-Message-Id": "m3",
            "X-Correlation-Id": "m3",
            "traceparent": TRACE,
            "tracestate": "a=b",
        },
    ),
]


@pytest.mark.parametrize(
    ("fields", "expected"), [case[1:] for case in HEADERS], ids=[case[0] for case in HEADERS]
)
def test_forwarded_headers(fields: dict[str, object], expected: dict[str, str]) -> None:
    message = InboundSMS.model_validate(
        {"gateway_id": "sim", "sender": "+15551234567", "text": "BAL", **fields}
    )
    assert forwarded_headers(message) == expected


ANSWERS = [
    ("no-header", {}, None),
    ("empty-header", {"twoway-conversation": ""}, None),
    (
        "answer",
        {"twoway-conversation": "q1", "twoway-handler": "amount"},
        ConversationRef(conversation_key("+15551234567", "12345"), "q1"),
    ),
]


@pytest.mark.parametrize(
    ("headers", "expected"), [case[1:] for case in ANSWERS], ids=[case[0] for case in ANSWERS]
)
def test_answered_conversation(headers: dict[str, str], expected: ConversationRef | None) -> None:
    message = InboundSMS(gateway_id="sim", sender="+15551234567", recipient="12345", text="10")
    delivery = read_delivery(
        b"",
        headers,
        message_id=message.message_id,
        correlation_id=None,
        type=message.type,
        redelivered=False,
        max_deliveries=5,
    )
    assert answered_conversation(message, delivery) == expected


def test_conversations_are_per_sender_and_recipient() -> None:
    keys = {
        conversation_key("+15551234567", "12345"),
        conversation_key("+15551234567", "67890"),
        conversation_key("+15557654321", "12345"),
    }
    assert len(keys) == 3
