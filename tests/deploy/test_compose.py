"""compose.yaml: valid under the compose specification, and a start order that health decides."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import pytest

from tests.deploy.project import load_compose, parse_dockerfile

pytestmark = pytest.mark.deploy


@cache
def compose_validator() -> Any:
    """The compose specification's JSON schema, as the check-jsonschema package ships it."""
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendored / "compose-spec.json").read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def test_compose_file_follows_the_compose_specification() -> None:
    compose_validator().validate(load_compose())


def test_the_specification_does_refuse_an_unknown_field() -> None:
    compose = load_compose()
    compose["services"]["ingress"]["helthcheck"] = {}
    with pytest.raises(jsonschema.ValidationError, match="helthcheck"):
        compose_validator().validate(compose)


def test_every_image_target_runs_in_compose() -> None:
    services = load_compose()["services"]
    built = {service["build"]["target"] for service in services.values() if "build" in service}
    assert built == set(parse_dockerfile().targets)


def test_every_service_has_a_health_check_and_waits_for_healthy_dependencies() -> None:
    services = load_compose()["services"]
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition == {"condition": "service_healthy"}, (name, dependency)


def test_services_listen_on_the_port_their_image_exposes() -> None:
    services = load_compose()["services"]
    targets = parse_dockerfile().targets
    for service in services.values():
        if "build" in service:
            target = targets[service["build"]["target"]]
            assert [int(service["environment"]["TWOWAY_PORT"])] == target.exposed


def test_services_start_after_rabbitmq_and_mongodb() -> None:
    services = load_compose()["services"]
    for name, service in services.items():
        if "build" in service and name != "gateway-sim":
            assert {"rabbitmq", "mongodb"} <= set(service["depends_on"]), name
