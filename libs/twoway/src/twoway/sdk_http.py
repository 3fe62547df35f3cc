"""The HTTP client handlers call back-ends with: `context.http`.

One `aiohttp.ClientSession` per adapter process (opened and closed by `http_session_context`, a
cleanup_ctx), so connections to a back-end are pooled and reused across messages. Every call:

- has timeouts from settings (`backend_timeout` per attempt, `backend_connect_timeout`);
- forwards the inbound message's ids as headers, so a back-end's logs join ours:
  `X-Twoway-Message-Id`, `X-Correlation-Id`, and W3C `traceparent` / `tracestate` when the
  message's trace carries them;
- is retried (`backend_retries` times, exponential backoff from `backend_retry_backoff`) only
  where a repeat is harmless: an idempotent method (RFC 9110: GET, HEAD, OPTIONS, PUT, DELETE,
  TRACE; or `idempotent=True` for a POST the back-end de-duplicates) that failed to connect,
  timed out, or was answered 502, 503 or 504;
- reads the whole body and returns a `BackendResponse`; an error status raises `BackendError`
  (unless `raise_for_status=False`), whose `retryable` tells a transient fault from a refusal.

A handler that lets `BackendError` escape gets the adapter's failure policy (see
`twoway.handler_policy`): transient faults are retried later, a refusal (4xx) gives up at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from pydantic import Field
from yarl import URL

from twoway import metrics
from twoway.messages import Envelope
from twoway.service import CleanupContext
from twoway.settings import TwowaySettings

log = structlog.get_logger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRY_STATUSES = frozenset({502, 503, 504})
TRANSIENT_STATUSES = frozenset({408, 425, 429}) | RETRY_STATUSES | frozenset({500})
HEADER_MESSAGE_ID = "X-Twoway-Message-Id"
HEADER_CORRELATION_ID = "X-Correlation-Id"
TRACE_HEADERS = ("traceparent", "tracestate")

HTTP_SESSION = web.AppKey("backend_http_session", aiohttp.ClientSession)


class BackendClientSettings(TwowaySettings):
    """How adapters call back-ends (`TWOWAY_BACKEND_*` environment variables)."""

    backend_url: str = Field(
        default="", description="Base URL that relative paths in `context.http` calls resolve to"
    )
    backend_timeout: float = Field(default=10.0, gt=0, description="Seconds per attempt, in all")
    backend_connect_timeout: float = Field(default=3.0, gt=0, description="Seconds to connect")
    backend_retries: int = Field(
        default=2, ge=0, description="Extra attempts of an idempotent call that failed transiently"
    )
    backend_retry_backoff: float = Field(
        default=0.2, ge=0, description="Seconds before the first retry; doubles for each next"
    )
    backend_max_connections: int = Field(default=100, ge=1, description="Pooled connections")


class BackendError(Exception):
    """A back-end call failed: unreachable, timed out, or answered with an error status."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        """Whether trying again later may succeed: no answer at all, or a transient status."""
        return self.status is None or self.status in TRANSIENT_STATUSES


@dataclass(frozen=True)
class BackendResponse:
    method: str
    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def ok(self) -> bool:
        return self.status < 400

    def raise_for_status(self) -> BackendResponse:
        """This response, if its status is not an error; else `BackendError`."""
        if not self.ok:
            raise BackendError(
                f"{self.method} {readable(self.url)} answered {self.status}", status=self.status
            )
        return self


def forwarded_headers(message: Envelope) -> dict[str, str]:
    """The headers that tie a back-end call to the message that caused it."""
    headers = {
        HEADER_MESSAGE_ID: message.message_id,
        HEADER_CORRELATION_ID: message.correlation_id or message.message_id,
    }
    headers.update({name: message.trace[name] for name in TRACE_HEADERS if name in message.trace})
    return headers


def may_retry(method: str, idempotent: bool | None) -> bool:
    """Whether a failed call with `method` may be sent again (`idempotent` overrides)."""
    return method.upper() in IDEMPOTENT_METHODS if idempotent is None else idempotent


def resolve_url(base_url: str, url: str) -> str:
    """`url` when absolute; otherwise `url` under `base_url` (its path kept: `/api` + `x`)."""
    target = URL(url)
    if target.is_absolute() or not base_url:
        return url
    base = URL(base_url if base_url.endswith("/") else base_url + "/")
    return str(base.join(URL(url.lstrip("/"))))


def readable(url: str) -> str:
    """`url` with its percent-escapes decoded, for messages and logs (where a phone number in it
    is then masked like any other)."""
    return URL(url).human_repr()


def http_session_context(settings: BackendClientSettings, service: str) -> CleanupContext:
    """A cleanup_ctx: the process's one back-end `ClientSession`, closed at shutdown."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(
            headers={"User-Agent": f"twoway-{service}"},
            connector=aiohttp.TCPConnector(limit=settings.backend_max_connections),
            timeout=aiohttp.ClientTimeout(
                total=settings.backend_timeout, connect=settings.backend_connect_timeout
            ),
        ) as session:
            app[HTTP_SESSION] = session
            yield

    return context


class BackendClient:
    """Back-end calls on behalf of one inbound message (its ids go out as headers)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: BackendClientSettings,
        message: Envelope,
    ) -> None:
        self._session = session
        self._settings = settings
        self._headers = forwarded_headers(message)

    async def get(self, url: str, **options: Any) -> BackendResponse:
        return await self.request("GET", url, **options)

    async def post(self, url: str, **options: Any) -> BackendResponse:
        return await self.request("POST", url, **options)

    async def put(self, url: str, **options: Any) -> BackendResponse:
        return await self.request("PUT", url, **options)

    async def delete(self, url: str, **options: Any) -> BackendResponse:
        return await self.request("DELETE", url, **options)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        attempt_timeout: float | None = None,
        idempotent: bool | None = None,
        raise_for_status: bool = True,
    ) -> BackendResponse:
        """Call the back-end; `BackendError` when it cannot be reached or (by default) when it
        answers with an error status. `attempt_timeout` (seconds) overrides `backend_timeout`."""
        target = resolve_url(self._settings.backend_url, url)
        attempts = 1 + (self._settings.backend_retries if may_retry(method, idempotent) else 0)
        per_attempt = (
            aiohttp.ClientTimeout(
                total=attempt_timeout, connect=self._settings.backend_connect_timeout
            )
            if attempt_timeout is not None
            else None
        )
        attempt = 1
        while True:
            try:
                response = await self._send(
                    method, target, params, json, data, headers, per_attempt
                )
            except BackendError as error:
                if attempt >= attempts:
                    raise
                failure = str(error)
            else:
                if attempt >= attempts or response.status not in RETRY_STATUSES:
                    return response.raise_for_status() if raise_for_status else response
                failure = f"answered {response.status}"
            log.info(
                "backend_retry", method=method, url=readable(target), attempt=attempt, error=failure
            )
            metrics.BACKEND_RETRIES.inc()
            await asyncio.sleep(self._settings.backend_retry_backoff * 2 ** (attempt - 1))
            attempt += 1

    async def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        json: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        client_timeout: aiohttp.ClientTimeout | None,
    ) -> BackendResponse:
        options: dict[str, Any] = {}
        if client_timeout is not None:
            options["timeout"] = client_timeout
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                json=json,
                data=data,
                headers={**self._headers, **(headers or {})},
                **options,
            ) as response:
                body = await response.read()
                metrics.BACKEND_CALLS.labels(outcome=f"{response.status // 100}xx").inc()
                return BackendResponse(method, url, response.status, dict(response.headers), body)
        except TimeoutError as error:  # first: aiohttp's timeouts are ClientErrors too
            metrics.BACKEND_CALLS.labels(outcome="timeout").inc()
            raise BackendError(f"{method} {readable(url)} timed out") from error
        except aiohttp.ClientError as error:
            metrics.BACKEND_CALLS.labels(outcome="unreachable").inc()
            raise BackendError(
                f"{method} {readable(url)} failed: {type(error).__name__}: {error}"
            ) from error
