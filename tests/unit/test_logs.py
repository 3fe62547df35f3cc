"""Structured logging: phone numbers and URL credentials masked everywhere, JSON lines carrying
the bound context."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from twoway.logs import configure_logging, mask_phone_numbers
from twoway.settings import TwowaySettings

PHONE = "+14155552671"
MASKED = "+14*******71"
MESSAGE_ID = "01JH5Z8K3QW7N2M4P6R8T0V2X4"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`configure_logging` changes process-wide state: put it all back after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


MASK_CASES = (
    ("string", {"event": f"from {PHONE}"}, {"event": f"from {MASKED}"}),
    ("spelled-out", {"event": "from +1 415 555 2671"}, {"event": "from +1 **********71"}),
    ("nested-dict", {"fields": {"from": PHONE, "n": 3}}, {"fields": {"from": MASKED, "n": 3}}),
    ("list", {"to": [PHONE, "12345"]}, {"to": [MASKED, "12345"]}),
    ("tuple-becomes-list", {"to": (PHONE,)}, {"to": [MASKED]}),
    (
        "deeply-nested",
        {"a": {"b": [{"c": f"x {PHONE} y"}]}},
        {"a": {"b": [{"c": f"x {MASKED} y"}]}},
    ),
    (
        "non-strings-kept",
        {"n": 14155552671, "ok": True, "none": None},
        {"n": 14155552671, "ok": True, "none": None},
    ),
    ("ids-kept", {"message_id": MESSAGE_ID}, {"message_id": MESSAGE_ID}),
    (
        "url-credentials",
        {"error": "amqp://guest:guest@rabbit:5672/ closed", "db": {"url": "mongodb://u:p@db/x"}},
        {"error": "amqp://guest:***@rabbit:5672/ closed", "db": {"url": "mongodb://u:***@db/x"}},
    ),
    (
        "url-credentials-and-phone",
        {"event": f"GET https://user:pw@gw/send?to={PHONE}"},
        {"event": f"GET https://user:***@gw/send?to={MASKED}"},
    ),
)


@pytest.mark.parametrize(
    ("event", "expected"), [case[1:] for case in MASK_CASES], ids=[case[0] for case in MASK_CASES]
)
def test_mask_phone_numbers(event: dict[str, Any], expected: dict[str, Any]) -> None:
    assert mask_phone_numbers(None, "info", dict(event)) == expected


URL_CASES = (
    ("amqp", "amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:***@127.0.0.1:5672/"),
    ("mongodb-in-text", "to mongodb://u:p@h/db failed", "to mongodb://u:***@h/db failed"),
    ("https", "https://user:pw@x/path", "https://user:***@x/path"),
    ("token-only", "https://ghp_secret@example.com/r", "https://***@example.com/r"),
    ("empty-user", "redis://:secret@cache:6379", "redis://:***@cache:6379"),
    ("at-sign-in-password", "amqp://u:p@ss@rabbit/", "amqp://u:***@rabbit/"),
    ("two-urls", "amqp://a:b@h1 amqp://c:d@h2", "amqp://a:***@h1 amqp://c:***@h2"),
    ("no-credentials-kept", "https://example.com/a?b=c@d", "https://example.com/a?b=c@d"),
    ("email-kept", "ops@example.com", "ops@example.com"),
    ("no-url", "plain text", "plain text"),
)


@pytest.mark.parametrize(
    ("text", "expected"), [case[1:] for case in URL_CASES], ids=[case[0] for case in URL_CASES]
)
def test_url_credentials_are_masked(text: str, expected: str) -> None:
    assert mask_phone_numbers(None, "info", {"value": text}) == {"value": expected}


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_context_and_never_the_phone(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(TwowaySettings(log_format="json", log_level="INFO"), "ingress")
    log = structlog.get_logger("test")
    with structlog.contextvars.bound_contextvars(message_id=MESSAGE_ID):
        log.info("inbound_accepted", sender=PHONE, params={"msisdn": PHONE})
    log.info("after_the_block", text=f"call me on {PHONE}")
    log.debug("below_the_level", sender=PHONE)

    out = capsys.readouterr().out
    assert PHONE not in out
    assert PHONE[1:] not in out
    inside, after = json_lines(out)
    assert inside["event"] == "inbound_accepted"
    assert inside["message_id"] == MESSAGE_ID
    assert inside["service"] == "ingress"
    assert inside["level"] == "info"
    assert inside["sender"] == MASKED
    assert inside["params"] == {"msisdn": MASKED}
    assert inside["timestamp"].endswith("Z")
    assert after["event"] == "after_the_block"
    assert "message_id" not in after
    assert after["text"] == f"call me on {MASKED}"


@pytest.mark.usefixtures("restore_logging")
def test_standard_library_logs_are_json_and_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(TwowaySettings(log_format="json"), "outbound")
    with structlog.contextvars.bound_contextvars(message_id=MESSAGE_ID):
        logging.getLogger("aiohttp.client").warning("could not send to %s", PHONE)
    logging.getLogger("quiet").info("below the root level")

    out = capsys.readouterr().out
    assert PHONE not in out
    (line,) = json_lines(out)
    assert line["event"] == f"could not send to {MASKED}"
    assert line["logger"] == "aiohttp.client"
    assert line["message_id"] == MESSAGE_ID
    assert line["service"] == "outbound"


@pytest.mark.usefixtures("restore_logging")
def test_console_format_is_not_json_and_still_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(TwowaySettings(log_format="console"), "router")
    structlog.get_logger("test").info("routed", sender=PHONE)

    out = capsys.readouterr().out
    assert "routed" in out
    assert MASKED in out
    assert PHONE not in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.splitlines()[0])


@pytest.mark.usefixtures("restore_logging")
def test_structlog_and_standard_library_lines_keep_their_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """structlog's lines are bytes written to stdout's buffer, the standard library's go through
    its text layer: each is flushed at once, so the two never swap."""
    configure_logging(TwowaySettings(log_format="json"), "router")
    structlog.get_logger("test").warning("first")
    logging.getLogger("aiormq").warning("second")
    structlog.get_logger("test").warning("third")

    assert [line["event"] for line in json_lines(capsys.readouterr().out)] == [
        "first",
        "second",
        "third",
    ]
