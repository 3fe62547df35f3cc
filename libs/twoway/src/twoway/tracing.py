"""OpenTelemetry trace context, carried across HTTP requests and AMQP messages.

Every service depends only on the OpenTelemetry API, which does nothing until an SDK is
installed. The context still flows: ingress reads a gateway's `traceparent`, every publish writes
the current context into the message's AMQP headers, and every consumer continues it.
`TWOWAY_OTEL_EXPORTER` (off by default) installs the SDK in each process: `console` prints its
spans, `otlp` sends them to an OpenTelemetry collector over OTLP/HTTP. Both need the `otel` extra
(`uv sync --extra otel`; the images: `docker build --build-arg EXTRA=otel`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Literal

from aiohttp import web
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from pamqp.common import FieldValue

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

TRACER = trace.get_tracer("twoway")

Exporter = Literal["none", "console", "otlp"]


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


def span_exporter(exporter: Literal["console", "otlp"]) -> SpanExporter:
    """The SDK's span exporter that `exporter` names. `otlp` posts OTLP/HTTP protobuf to the
    collector that the SDK's standard variables name: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
    `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces` (default `http://localhost:4318/v1/traces`), with
    their `_HEADERS`, `_TIMEOUT` and `_COMPRESSION`. Nothing is sent until a span ends."""
    try:
        if exporter == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            return ConsoleSpanExporter()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    except ImportError as error:
        raise RuntimeError(
            f"TWOWAY_OTEL_EXPORTER={exporter} needs the `otel` extra (uv sync --extra otel; "
            f"images: docker build --build-arg EXTRA=otel): {error}"
        ) from error


def configure_tracing(exporter: Exporter, service: str) -> None:
    """Install the OpenTelemetry SDK with `exporter`; "none" leaves the no-op API in place."""
    if exporter == "none":
        return
    spans = span_exporter(exporter)
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(spans))
    trace.set_tracer_provider(provider)
