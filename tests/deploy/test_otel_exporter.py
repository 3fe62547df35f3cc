"""The OpenTelemetry exporter can be turned on in the images: every service package has the `otel`
extra in the lock (the images sync it with `--build-arg EXTRA=otel`), `TWOWAY_OTEL_EXPORTER`
takes `otlp`, and `otlp` sends to the collector the standard `OTEL_EXPORTER_OTLP_ENDPOINT` names
(here one on the loopback interface, so no network is needed)."""

from __future__ import annotations

import asyncio
import sys
import tomllib
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest
from aiohttp import web
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter
from pydantic import ValidationError

from tests.deploy.project import REPO, workspace_services
from tests.support.servers import serving
from twoway.settings import TwowaySettings
from twoway.tracing import span_exporter

pytestmark = pytest.mark.deploy

OTEL_PACKAGES = {"opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"}


def locked_packages() -> dict[str, dict[str, Any]]:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    return {package["name"]: package for package in lock["package"]}


def test_every_service_locks_an_otel_extra_with_the_sdk_and_the_otlp_exporter() -> None:
    packages = locked_packages()
    otel = {
        dependency["name"] for dependency in packages["twoway"]["optional-dependencies"]["otel"]
    }
    assert otel >= OTEL_PACKAGES
    for service in workspace_services():
        extras = packages[service.package].get("optional-dependencies", {})
        assert {"name": "twoway", "extra": ["otel"]} in extras.get("otel", []), service.package
        assert not OTEL_PACKAGES & {d["name"] for d in packages[service.package]["dependencies"]}


@pytest.mark.parametrize("exporter", ["none", "console", "otlp"])
def test_the_exporter_setting_takes_none_console_and_otlp(
    monkeypatch: pytest.MonkeyPatch, exporter: str
) -> None:
    monkeypatch.setenv("TWOWAY_OTEL_EXPORTER", exporter)
    assert TwowaySettings().otel_exporter == exporter


def test_an_unknown_exporter_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWOWAY_OTEL_EXPORTER", "jaeger")
    with pytest.raises(ValidationError):
        TwowaySettings()


def test_console_prints_spans() -> None:
    assert isinstance(span_exporter("console"), ConsoleSpanExporter)


@pytest.fixture
async def collector() -> AsyncIterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """A stand-in OpenTelemetry collector on the loopback interface: OTLP/HTTP trace posts."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        received.append(ExportTraceServiceRequest.FromString(await request.read()))
        return web.Response(content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    async with serving(app) as url:
        yield url, received


def one_span(exporter: SpanExporter) -> int:
    """Record one span through `exporter` (exported as it ends); its trace id."""
    provider = TracerProvider()  # not the global one, which other tests set
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("gateway post") as span:
        trace_id: int = span.get_span_context().trace_id
    provider.shutdown()
    return trace_id


async def test_otlp_sends_spans_to_the_standard_endpoint(
    monkeypatch: pytest.MonkeyPatch,
    collector: tuple[str, list[ExportTraceServiceRequest]],
) -> None:
    url, received = collector
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    exporter = span_exporter("otlp")
    assert isinstance(exporter, OTLPSpanExporter)
    # The exporter's HTTP client blocks: off the event loop that serves the collector.
    trace_id = await asyncio.to_thread(one_span, exporter)
    [request] = received
    [sent] = [s for r in request.resource_spans for scope in r.scope_spans for s in scope.spans]
    assert (sent.name, int.from_bytes(sent.trace_id, "big")) == ("gateway post", trace_id)


@pytest.mark.parametrize(
    ("exporter", "module"),
    [
        ("console", "opentelemetry.sdk.trace.export"),
        ("otlp", "opentelemetry.exporter.otlp.proto.http.trace_exporter"),
    ],
)
def test_without_the_extra_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, exporter: Literal["console", "otlp"], module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import` now raises ImportError
    with pytest.raises(RuntimeError, match="EXTRA=otel"):
        span_exporter(exporter)
