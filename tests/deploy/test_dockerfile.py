"""The Dockerfile: linted by hadolint, and the house rules hadolint does not know."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.deploy.project import REPO, parse_dockerfile, tool, workspace_services

pytestmark = pytest.mark.deploy

EXTRA_FLAG = '${EXTRA:+"--extra=$EXTRA"}'
"""How every `uv sync` adds the service's extra named by the build argument EXTRA, if any."""


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("hadolint"), "--no-color", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_hadolint_finds_nothing() -> None:
    result = hadolint(REPO / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image


def test_every_workspace_service_has_an_image_running_its_script() -> None:
    targets = parse_dockerfile().targets
    by_package = {target.package: target for target in targets.values()}
    for service in workspace_services():
        assert service.package in by_package, f"no Dockerfile target for {service.package}"
        assert by_package[service.package].command == [service.script]


def test_every_image_installs_a_workspace_package() -> None:
    packages = {service.package for service in workspace_services()}
    for target in parse_dockerfile().targets.values():
        assert target.package in packages, f"target {target.name}: unknown {target.package!r}"
        assert len(target.exposed) == 1, f"target {target.name} exposes {target.exposed}"


def test_images_install_from_the_lock_without_dev_dependencies() -> None:
    runs = [
        instruction["value"]
        for instruction in parse_dockerfile().instructions
        if instruction["instruction"] == "RUN" and "uv sync" in instruction["value"]
    ]
    assert runs
    for command in runs:
        for flag in ("--frozen", "--no-dev", "--no-editable", "--package ", EXTRA_FLAG):
            assert flag in command, command
        assert "devstack" not in command


def test_the_extra_build_argument_reaches_every_service_stage() -> None:
    """`--build-arg EXTRA=otel` (an ARG ends with its stage, so the build stage passes it on as
    ENV to the `<service>-venv` stages built from it; empty by default: no extra)."""
    build, stage = [], ""
    for instruction in parse_dockerfile().instructions:
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "FROM":
            stage = value.partition(" AS ")[2]
        elif stage == "build":
            build.append((kind, value))
    assert ("ARG", 'EXTRA=""') in build
    assert any(kind == "ENV" and "EXTRA=${EXTRA}" in value for kind, value in build)


def test_images_run_as_a_non_root_user_on_a_slim_python_without_healthcheck() -> None:
    dockerfile = parse_dockerfile()
    kinds = [instruction["instruction"] for instruction in dockerfile.instructions]
    assert "HEALTHCHECK" not in kinds
    assert "ADD" not in kinds
    assert dockerfile.stages["runtime"] == "${PYTHON_IMAGE}"
    assert any(
        instruction["instruction"] == "ARG"
        and instruction["value"].startswith("PYTHON_IMAGE=python:3.11-slim")
        for instruction in dockerfile.instructions
    )
    users = [
        instruction["value"]
        for instruction in dockerfile.instructions
        if instruction["instruction"] == "USER"
    ]
    assert users == ["10001:10001"]  # numeric, so Kubernetes' runAsNonRoot can verify it
    for target in dockerfile.targets.values():
        assert target.base == "runtime"


def test_the_build_context_leaves_out_tests_and_local_state() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".run", "tests", "benchmarks", "deploy"} <= ignored
