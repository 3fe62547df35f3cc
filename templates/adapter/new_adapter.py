"""Start a new adapter from this template: `python templates/adapter/new_adapter.py NAME PORT`.

Copies the skeleton into services/adapters/NAME (the package twoway-NAME-adapter, command
twoway-NAME-adapter, health and metrics on PORT), its unit tests into tests/unit/, its
Kubernetes component into deploy/components/adapters/NAME; appends its image target to the
Dockerfile and its service to compose.yaml. docs/write-an-adapter.md has the steps after it.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent
PLACEHOLDER = "skeleton"
PLACEHOLDER_PORT = "9199"


def fill(text: str, name: str, port: int) -> str:
    """The template text for adapter `name` on `port`."""
    text = text.replace(PLACEHOLDER_PORT, str(port))
    text = text.replace(PLACEHOLDER.capitalize(), name.capitalize())
    return text.replace(PLACEHOLDER, name)


def copy_filled(source: Path, destination: Path, name: str, port: int) -> None:
    for path in sorted(source.rglob("*")):
        target = destination / fill(str(path.relative_to(source)), name, port)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(fill(path.read_text(), name, port))


def new_adapter(root: Path, name: str, port: int) -> None:
    """Write adapter `name` into the repository at `root`."""
    if not re.fullmatch(r"[a-z][a-z0-9]{1,30}", name):
        raise ValueError(f"adapter name {name!r}: lower-case letters and digits, from 2 to 31")
    service = root / "services" / "adapters" / name
    if service.exists():
        raise FileExistsError(f"{service} already exists")
    copy_filled(TEMPLATE / "service", service, name, port)
    copy_filled(TEMPLATE / "deploy", root / "deploy" / "components" / "adapters" / name, name, port)
    copy_filled(TEMPLATE / "tests", root / "tests" / "unit", name, port)
    # Both files end with their list of services, so a new one is appended.
    for part, target in (("Dockerfile.part", "Dockerfile"), ("compose.part.yaml", "compose.yaml")):
        with (root / target).open("a", encoding="utf-8") as file:
            file.write(fill((TEMPLATE / part).read_text(), name, port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the adapter's name: its queue is adapter.NAME")
    parser.add_argument("port", type=int, help="its health and metrics port (e.g. 9120)")
    parser.add_argument("--root", type=Path, default=TEMPLATE.parents[1], help="the repository")
    args = parser.parse_args()
    new_adapter(args.root, args.name, args.port)
    print(f"adapter {args.name!r} written: now follow docs/write-an-adapter.md, step 3")


if __name__ == "__main__":
    main()
