"""Ingress's OpenAPI document is valid OpenAPI 3.1 and names exactly the routes the app serves."""

from __future__ import annotations

from pathlib import Path

import pytest
from openapi_spec_validator import validate

from twoway_ingress.app import create_app
from twoway_ingress.openapi import DOCUMENT
from twoway_ingress.settings import IngressSettings

REPO = Path(__file__).resolve().parents[2]


def test_the_document_is_valid_openapi() -> None:
    validate(DOCUMENT)


@pytest.mark.parametrize("subscribe_mode", ["off", "public"])
def test_the_document_names_every_route_and_method(subscribe_mode: str) -> None:
    settings = IngressSettings(
        gateways_file=REPO / "config" / "gateways.yaml",
        receive_gateway="sim",
        reference_secret="r" * 16,
        subscribe_mode=subscribe_mode,
    )
    app = create_app(settings)
    served = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(path, method) for path, item in DOCUMENT["paths"].items() for method in item}
    assert served == documented
