"""Structured logging: structlog, JSON in production, console for development.

Every line carries the context bound with `structlog.contextvars` (services bind `message_id` and
`correlation_id` while they handle a message) and has phone numbers masked wherever they appear,
as are the credentials of any URL in it (`amqp://user:***@host`).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import Any

import orjson
import structlog

from twoway.messages import Envelope
from twoway.phone import mask_phone, mask_phones_in
from twoway.settings import TwowaySettings
from twoway.tracing import configure_tracing

_URL_CREDENTIALS = re.compile(r"(?<=://)(?:([^\s/?#@:]*):)?[^\s/?#]*@")
"""The user information of a URL (`scheme://user:password@`, `scheme://token@`): its password
(or lone token) is masked, `amqp://guest:***@host`."""


def _mask_url_credentials(match: re.Match[str]) -> str:
    user = match.group(1)
    return "***@" if user is None else f"{user}:***@"


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        if "://" in value:  # tested here, not in a call: this runs for every value logged
            value = _URL_CREDENTIALS.sub(_mask_url_credentials, value)
        return mask_phones_in(value)
    if isinstance(value, Mapping):
        return {key: _mask(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(item) for item in value]
    return value


PHONE_KEYS = frozenset({"sender", "recipient", "to", "from", "phone", "phone_number"})
"""Log keys that hold a phone number whatever its format: masked whole."""


def mask_phone_numbers(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: masks phone numbers and URL credentials in every value of a log
    line."""
    for key, value in event_dict.items():
        if key in PHONE_KEYS and isinstance(value, str):
            event_dict[key] = mask_phone(value)
        else:
            event_dict[key] = _mask(value)
    return event_dict


def bound_message_ids(message: Envelope) -> AbstractContextManager[None]:
    """Binds `message_id` and `correlation_id` to every log line inside; a message that starts a
    conversation (an inbound SMS) is its own correlation id."""
    return structlog.contextvars.bound_contextvars(
        message_id=message.message_id, correlation_id=message.correlation_id or message.message_id
    )


def configure_logging(settings: TwowaySettings, service: str) -> None:
    """Configure structlog (and the standard library's loggers) for one service process, and
    its tracing (`TWOWAY_OTEL_EXPORTER`, off by default)."""
    configure_tracing(settings.otel_exporter, service)
    json_lines = settings.log_format == "json"
    # Masking runs before the level and the timestamp are added: they never hold a number, and the
    # phone pattern is the costliest step of a line.
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.format_exc_info,
        mask_phone_numbers,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # structlog's own lines are rendered to bytes by orjson and written to stdout's buffer, with
    # no str round trip; the standard library's handler needs str.
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.JSONRenderer(serializer=orjson.dumps)
            if json_lines
            else structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.log_level]
        ),
        logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer)
        if json_lines
        else structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
