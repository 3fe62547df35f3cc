"""An SMS through the running system moves the series the dashboard draws, on every service's
/metrics endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from prometheus_client.parser import text_string_to_metric_families

from tests.support.stack import Stack, running_stack
from twoway.sdk import AdapterSettings
from twoway_echo.adapter import adapter as echo_adapter

pytestmark = [pytest.mark.e2e, pytest.mark.rabbit, pytest.mark.mongo]

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def stack(
    make_settings: Callable[..., Any], amqp: AbstractRobustConnection, tmp_path: Path
) -> AsyncIterator[Stack]:
    async with running_stack(
        make_settings, tmp_path, lambda _gateway: [(echo_adapter, make_settings(AdapterSettings))]
    ) as running:
        yield running


async def scrape(stack: Stack, base: str) -> Series:
    async with stack.http.get(f"{base}/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float:
    return sum(
        amount
        for (sample, sample_labels), amount in series.items()
        if sample == name and set(labels.items()) <= sample_labels
    )


EXPECTED = [
    ("twoway_inbound_received_total", {}),
    ("twoway_router_match_seconds_count", {}),
    ("twoway_router_routed_total", {"adapter": "echo"}),
    ("twoway_adapter_handled_total", {"adapter": "echo"}),
    ("twoway_consumed_total", {"queue": "router.inbound"}),
    ("twoway_consumed_total", {"queue": "adapter.echo"}),
    ("twoway_consumed_total", {"queue": "outbound.send"}),
    ("twoway_outbound_total", {"gateway": "sim"}),
]


def unmoved(old: Series, new: Series) -> list[tuple[str, dict[str, str]]]:
    return [
        (name, labels)
        for name, labels in EXPECTED
        if value(new, name, **labels) <= value(old, name, **labels)
    ]


async def test_an_sms_moves_the_expected_series_on_every_service(stack: Stack) -> None:
    bases = [stack.ingress, stack.router, stack.outbound, *stack.adapters.values()]
    before = {base: await scrape(stack, base) for base in bases}
    await stack.send_mo("+15551234567", "ECHO metrics")
    assert len(await stack.received(1)) == 1
    # Outbound counts and acks just after the gateway answered: wait for that, boundedly.
    deadline = asyncio.get_running_loop().time() + 5
    for base in bases:
        while unmoved(before[base], after := await scrape(stack, base)):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        assert unmoved(before[base], after) == [], base
