"""How a gateway's answer to a send is classified: success, retry later, or permanent failure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

Outcome = Literal["success", "retry", "permanent"]


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    detail: str
    retry_after: float | None = None
    gateway_message_id: str | None = None
    parts_sent: int = 0
    """Of a message sent as several requests (one per part): how many succeeded."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone: HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def classify_status(status: int, body: str, retry_after: str | None = None) -> SendResult:
    """2xx success; 429 and 5xx retry (honouring Retry-After); other statuses fail for good."""
    detail = f"HTTP {status}: {body[:200]}".strip()
    if 200 <= status < 300:
        return SendResult("success", detail)
    if status == 429 or status >= 500:
        return SendResult("retry", detail, parse_retry_after(retry_after))
    return SendResult("permanent", detail)
