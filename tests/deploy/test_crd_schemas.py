"""The custom resources' schemas: what crd_schemas makes of a CRD, and the files it made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.deploy.crd_schemas import resource_schemas
from tests.deploy.project import CRD_SCHEMAS

pytestmark = pytest.mark.deploy

CRD: dict[str, Any] = {
    "spec": {
        "group": "example.com",
        "names": {"kind": "Widget"},
        "versions": [
            {"name": "v1alpha1", "served": False},
            {
                "name": "v1",
                "served": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "type": "object",
                                "description": "left out",
                                "required": ["size"],
                                "properties": {
                                    "size": {
                                        "anyOf": [{"type": "integer"}, {"type": "string"}],
                                        "x-kubernetes-int-or-string": True,
                                    },
                                    "labels": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                    "config": {
                                        "type": "object",
                                        "nullable": True,
                                        "x-kubernetes-preserve-unknown-fields": True,
                                        "properties": {"known": {"type": "string"}},
                                    },
                                },
                            },
                        },
                    }
                },
            },
        ],
    }
}


@pytest.fixture(scope="module")
def widget() -> jsonschema.Draft202012Validator:
    [(name, schema)] = resource_schemas(CRD).items()
    assert name == "example.com_v1_Widget.json"
    assert "description" not in json.dumps(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize(
    ("spec", "valid"),
    [
        ({"size": 3, "labels": {"a": "b"}, "config": {"anything": [1]}}, True),
        ({"size": "3Gi", "config": None}, True),
        ({"size": 3, "colour": "red"}, False),  # not a field of spec
        ({"size": 3, "labels": {"a": 1}}, False),
        ({"size": 1.5}, False),
        ({}, False),  # size is required
    ],
)
def test_a_converted_crd_is_as_strict_as_the_api_server(
    widget: jsonschema.Draft202012Validator, spec: dict[str, Any], valid: bool
) -> None:
    resource = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}, "spec": spec}
    assert widget.is_valid(resource) == valid


def test_a_converted_crd_pins_its_kind_and_version(
    widget: jsonschema.Draft202012Validator,
) -> None:
    resource = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}}
    assert widget.is_valid({**resource, "spec": {"size": 1}})
    assert not widget.is_valid({**resource, "apiVersion": "example.com/v2", "spec": {"size": 1}})
    assert not widget.is_valid({"kind": "Widget", "metadata": {}, "spec": {"size": 1}})


@pytest.mark.parametrize("path", sorted(CRD_SCHEMAS.glob("*.json")), ids=lambda path: path.stem)
def test_every_schema_file_is_a_valid_json_schema(path: Path) -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))
