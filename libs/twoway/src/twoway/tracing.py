"""OpenTelemetry trace context, carried across HTTP requests and AMQP messages.

Every service depends only on the OpenTelemetry API, which does nothing until an SDK is
installed. The context still flows: ingress reads a gateway's `traceparent`, every publish writes
the current context into the message's AMQP headers, and every consumer continues it. With
`TWOWAY_OTEL_EXPORTER=console` (off by default; needs the `otel` extra, `opentelemetry-sdk`) each
process records spans and prints them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from aiohttp import web
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from pamqp.common import FieldValue

TRACER = trace.get_tracer("twoway")

Exporter = Literal["none", "console"]


def inject_into(headers: dict[str, FieldValue]) -> None:
    """Write the current trace context (`traceparent`, `tracestate`) into AMQP headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    headers.update(carrier)


def context_from(headers: Mapping[str, object]) -> Context:
    """The trace context that message or request headers carry (empty when they carry none)."""
    carrier = {key.lower(): value for key, value in headers.items() if isinstance(value, str)}
    return propagate.extract(carrier)


@web.middleware
async def trace_requests(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A server span per HTTP request, continuing the caller's trace context."""
    with TRACER.start_as_current_span(
        f"{request.method} {request.path}",
        context=context_from(request.headers),
        kind=trace.SpanKind.SERVER,
    ):
        return await handler(request)


def configure_tracing(exporter: Exporter, service: str) -> None:
    """Install the OpenTelemetry SDK with `exporter`; "none" leaves the no-op API in place."""
    if exporter == "none":
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
