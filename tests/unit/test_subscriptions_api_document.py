"""The api's OpenAPI document: valid OpenAPI 3.1, and exactly the routes the api serves."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import validate

from twoway.dead_letters import OUTBOUND_DEAD_LETTER_QUEUES
from twoway.messages import EVENT_SOURCE_PATTERN
from twoway.service import create_base_app
from twoway_api.app import OPENAPI, create_app
from twoway_api.messages import MAX_KEY_LENGTH
from twoway_api.settings import ApiSettings


def _routes(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


@pytest.fixture(scope="module")
def app() -> web.Application:
    return create_app(ApiSettings(api_token="unit-test"))


@pytest.fixture(scope="module")
def document(app: web.Application) -> dict[str, Any]:
    return app[OPENAPI]


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)


def test_every_route_of_the_api_is_documented_and_nothing_else(
    app: web.Application, document: dict[str, Any]
) -> None:
    served = _routes(app) - _routes(create_base_app())  # health routes come with every service
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert documented == served


def test_every_operation_but_the_document_needs_the_bearer_token(
    document: dict[str, Any],
) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path == "/openapi.json":
                assert operation["security"] == []
            else:
                assert operation["security"] == [{"bearer": []}], (method, path)
                assert {"401", "403"} <= set(operation["responses"]), (method, path)


def test_every_event_source_operation_documents_unknown_and_malformed_sources(
    document: dict[str, Any],
) -> None:
    for path, operations in document["paths"].items():
        if "{event_source}" in path:
            for method, operation in operations.items():
                assert {"404", "422"} <= set(operation["responses"]), (method, path)


def test_every_request_and_response_schema_is_defined(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    references = {
        content["schema"]["$ref"].rpartition("/")[2]
        for operations in document["paths"].values()
        for operation in operations.values()
        for part in [operation.get("requestBody", {}), *operation["responses"].values()]
        for content in part.get("content", {}).values()
        if "$ref" in content.get("schema", {})
    }
    assert references
    assert references <= set(schemas)


def test_path_parameters_state_what_they_accept(document: dict[str, Any]) -> None:
    parameters = {
        parameter["name"]: parameter["schema"]
        for operations in document["paths"].values()
        for operation in operations.values()
        for parameter in operation["parameters"]
        if parameter["in"] == "path"
    }
    assert parameters["event_source"]["pattern"] == EVENT_SOURCE_PATTERN
    assert re.fullmatch(parameters["phone"]["pattern"], "+15551234567")
    assert not re.fullmatch(parameters["phone"]["pattern"], "count")
    assert parameters["queue"]["enum"] == list(OUTBOUND_DEAD_LETTER_QUEUES)


def test_send_message_documents_its_idempotency_key(document: dict[str, Any]) -> None:
    [header] = [
        parameter
        for parameter in document["paths"]["/messages"]["post"]["parameters"]
        if parameter["in"] == "header"
    ]
    assert (header["name"], header["required"]) == ("Idempotency-Key", True)
    assert header["schema"]["maxLength"] == MAX_KEY_LENGTH


def test_every_operation_documents_its_paths_exact_allow_header(
    document: dict[str, Any],
) -> None:
    for path, operations in document["paths"].items():
        allowed = ",".join(sorted(method.upper() for method in operations))
        for method, operation in operations.items():
            allow = operation["responses"]["405"]["headers"]["Allow"]["schema"]
            assert allow["const"] == allowed, (method, path)
