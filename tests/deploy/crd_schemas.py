"""Regenerate the custom resources' JSON Schemas in schemas/ from the operators' CRDs:

    python -m tests.deploy.crd_schemas path/to/crd.yaml [more.yaml ...]

Each served version's `openAPIV3Schema` becomes `schemas/<group>_<version>_<Kind>.json` (what
`project.validate_resource` reads), a JSON Schema (draft 2020-12) as strict as `kubectl apply`'s
field validation: an object that lists its properties takes no other field, unless the CRD marks
it `x-kubernetes-preserve-unknown-fields`; `nullable` admits null; apiVersion and kind are pinned
and required, with metadata. Descriptions and the other `x-kubernetes-*` markers (list and map
types, int-or-string, which `anyOf` already says) are left out. schemas/README.md names the CRDs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.project import CRD_SCHEMAS

DRAFT = "https://json-schema.org/draft/2020-12/schema"

Schema = dict[str, Any]


def json_schema(node: Schema) -> Schema:
    """One node of an `openAPIV3Schema`, and all below it, as JSON Schema."""
    schema = {
        key: value
        for key, value in node.items()
        if key != "description" and not key.startswith("x-kubernetes-")
    }
    if "properties" in schema:
        schema["properties"] = {
            name: json_schema(child) for name, child in node["properties"].items()
        }
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = json_schema(schema[key])
    if "anyOf" in schema:
        schema["anyOf"] = [json_schema(choice) for choice in schema["anyOf"]]
    if schema.pop("nullable", False) and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema


def resource_schemas(crd: Schema) -> dict[str, Schema]:
    """File name -> the JSON Schema of the resource, for each version the CRD serves."""
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schemas = {}
    for version in crd["spec"]["versions"]:
        if not version["served"]:
            continue
        schema = json_schema(version["schema"]["openAPIV3Schema"])
        schema["properties"]["apiVersion"] = {"const": f"{group}/{version['name']}"}
        schema["properties"]["kind"] = {"const": kind}
        schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
        schemas[f"{group}_{version['name']}_{kind}.json"] = {"$schema": DRAFT, **schema}
    return schemas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crds", nargs="+", type=Path, help="CustomResourceDefinition YAML files")
    arguments = parser.parse_args()
    for path in arguments.crds:
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "CustomResourceDefinition":
                continue
            for name, schema in resource_schemas(document).items():
                (CRD_SCHEMAS / name).write_text(json.dumps(schema, indent=2) + "\n")
                print(f"{path} -> schemas/{name}")


if __name__ == "__main__":
    main()
