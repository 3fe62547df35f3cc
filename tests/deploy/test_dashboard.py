"""The Grafana dashboard asks only for series that twoway.metrics defines."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from tests.deploy.project import DEPLOY
from twoway import metrics

pytestmark = pytest.mark.deploy

DASHBOARD = DEPLOY / "observability" / "grafana-dashboard.json"
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}


def defined_series() -> set[str]:
    """Every series name the metrics in twoway.metrics expose."""
    names: set[str] = set()
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            for family in metric.describe():
                names.update(family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type])
    return names


def queried_series(dashboard: dict[str, Any]) -> set[str]:
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    return {name for expr in expressions for name in re.findall(r"\btwoway_\w+", expr)}


def test_every_series_the_dashboard_queries_is_defined() -> None:
    queried = queried_series(json.loads(DASHBOARD.read_text()))
    assert queried
    assert queried - defined_series() == set()


def test_a_misspelt_series_is_caught() -> None:
    dashboard = {"panels": [{"targets": [{"expr": "rate(twoway_inbound_recieved_total[5m])"}]}]}
    assert queried_series(dashboard) - defined_series() == {"twoway_inbound_recieved_total"}


@pytest.mark.parametrize(
    "series",
    [
        "twoway_inbound_received_total",
        "twoway_outbound_total",
        "twoway_router_match_seconds_bucket",
        "twoway_router_routed_total",
        "twoway_consume_errors_total",
        "twoway_publish_errors_total",
        "twoway_dead_letters_total",
        "twoway_outbound_retries_total",
        "twoway_outbound_in_doubt_total",
        "twoway_delivery_reports_total",
    ],
)
def test_the_dashboard_shows_what_the_operators_watch(series: str) -> None:
    assert series in queried_series(json.loads(DASHBOARD.read_text()))


def test_panels_have_unique_ids_and_a_query_each() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["type"] == "row" or panel["targets"], panel["title"]
