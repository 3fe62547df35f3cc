"""The adapter template: a copy made by templates/adapter/new_adapter.py lints, builds into
compose and Kubernetes, and its code and tests run."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.deploy.project import (
    REPO,
    name,
    of_kind,
    parse_dockerfile,
    render,
    tool,
    validate_resource,
)
from tests.deploy.test_compose import compose_validator

pytestmark = pytest.mark.deploy

sys.path.insert(0, str(REPO / "templates" / "adapter"))
new_adapter = importlib.import_module("new_adapter")

NAME = "weather"
PORT = 9120


@pytest.fixture(scope="module")
def copy_of_the_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files new_adapter.py writes to, with the weather adapter added."""
    root = tmp_path_factory.mktemp("repository")
    for file in ("Dockerfile", "compose.yaml"):
        shutil.copy(REPO / file, root / file)
    shutil.copytree(REPO / "deploy", root / "deploy")
    (root / "tests" / "unit").mkdir(parents=True)
    new_adapter.new_adapter(root, NAME, PORT)
    return root


@pytest.fixture
def weather_package(copy_of_the_repository: Path) -> Iterator[None]:
    source = str(copy_of_the_repository / "services" / "adapters" / NAME / "src")
    sys.path.insert(0, source)
    yield
    sys.path.remove(source)
    for module in [m for m in sys.modules if m.startswith(f"twoway_{NAME}_adapter")]:
        del sys.modules[module]


def test_the_image_target_is_added_and_lints(copy_of_the_repository: Path) -> None:
    dockerfile = copy_of_the_repository / "Dockerfile"
    target = parse_dockerfile(dockerfile).targets[f"adapter-{NAME}"]
    assert target.package == f"twoway-{NAME}-adapter"
    assert target.command == [f"twoway-{NAME}-adapter"]
    assert target.exposed == [PORT]
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_the_compose_service_is_added_and_valid(copy_of_the_repository: Path) -> None:
    compose = yaml.safe_load((copy_of_the_repository / "compose.yaml").read_text())
    compose_validator().validate(compose)
    service = compose["services"][f"adapter-{NAME}"]
    assert service["build"]["target"] == f"adapter-{NAME}"
    assert service["environment"]["TWOWAY_PORT"] == str(PORT)
    assert "healthcheck" in service


def test_the_kubernetes_component_renders_valid_and_scales_on_its_queue(
    copy_of_the_repository: Path,
) -> None:
    overlay = copy_of_the_repository / "deploy" / "overlays" / "production"
    kustomization = overlay / "kustomization.yaml"
    text = kustomization.read_text()
    defaults = "  - ../../components/defaults"
    kustomization.write_text(
        text.replace(defaults, f"  - ../../components/adapters/{NAME}\n{defaults}", 1)
    )
    resources = render(overlay)
    for resource in resources:
        validate_resource(resource)
    [deployment] = [
        d for d in of_kind(resources, "Deployment") if name(d) == f"twoway-adapter-{NAME}"
    ]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    [scaled] = [
        s for s in of_kind(resources, "ScaledObject") if name(s) == f"twoway-adapter-{NAME}"
    ]
    assert scaled["spec"]["minReplicaCount"] == 0
    assert scaled["spec"]["triggers"][0]["metadata"]["queueName"] == f"adapter.{NAME}"


@pytest.mark.usefixtures("weather_package")
def test_the_adapter_and_its_tests_run(copy_of_the_repository: Path) -> None:
    adapter_module = importlib.import_module(f"twoway_{NAME}_adapter.adapter")
    assert adapter_module.adapter.name == NAME
    assert adapter_module.WeatherSettings().port == PORT
    test_file = copy_of_the_repository / "tests" / "unit" / f"test_{NAME}_adapter.py"
    source = copy_of_the_repository / "services" / "adapters" / NAME / "src"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        capture_output=True,
        text=True,
        check=False,
        cwd=copy_of_the_repository,
        env={**os.environ, "PYTHONPATH": str(source)},
        timeout=120,
    )
    assert result.returncode == 0, result.stdout
    assert "4 passed" in result.stdout


@pytest.mark.parametrize("bad_name", ["Weather", "my-adapter", "x", "9lives"])
def test_a_bad_name_is_refused(tmp_path: Path, bad_name: str) -> None:
    with pytest.raises(ValueError, match="adapter name"):
        new_adapter.new_adapter(tmp_path, bad_name, PORT)


def test_an_existing_adapter_is_not_overwritten(copy_of_the_repository: Path) -> None:
    with pytest.raises(FileExistsError):
        new_adapter.new_adapter(copy_of_the_repository, NAME, PORT)
