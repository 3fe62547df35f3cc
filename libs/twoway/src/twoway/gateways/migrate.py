"""`twoway-migrate-smsconfig SMSConfig.xml`: a MobileFirst SMSConfig.xml as gateways YAML.

Each `<gateway id hostName port programName toParamName fromParamName textParamName>` becomes a
`mobilefirst-http` gateway with the same parameter names; its `<parameter name value>` children
become fixed `parameters`, except those that look like secrets (password, secret, token, key...),
which become `secret_parameters` read from an environment variable named after the gateway and
the parameter. The first gateway is the default. Reads a local file the operator names.
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import yaml

from twoway.gateways.config import GatewaysConfig

SECRET_NAMES = re.compile(r"pass|secret|token|key|pwd|auth", re.IGNORECASE)


def _env_name(gateway_id: str, parameter: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", f"{gateway_id}_{parameter}".upper()).strip("_")


def _gateway(element: ElementTree.Element) -> dict[str, Any]:
    attributes = element.attrib
    gateway_id = re.sub(r"[^A-Za-z0-9_-]+", "-", attributes.get("id", "")).strip("-")
    if not gateway_id:
        raise ValueError("a <gateway> has no id")
    scheme = attributes.get("protocol", "http").lower()
    host = attributes.get("hostName", "localhost")
    port = attributes.get("port")
    program = attributes.get("programName", "").lstrip("/")
    gateway: dict[str, Any] = {
        "id": gateway_id,
        "type": "mobilefirst-http",
        "url": f"{scheme}://{host}{':' + port if port else ''}/{program}",
        "to_param": attributes.get("toParamName", "to"),
        "from_param": attributes.get("fromParamName", "from"),
        "text_param": attributes.get("textParamName", "text"),
    }
    parameters: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for parameter in element.iter("parameter"):
        name = parameter.get("name", "")
        if not name:
            continue
        if SECRET_NAMES.search(name):
            secrets[name] = _env_name(gateway_id, name)
        else:
            parameters[name] = parameter.get("value", "")
    if parameters:
        gateway["parameters"] = parameters
    if secrets:
        gateway["secret_parameters"] = secrets
    return gateway


def convert(xml_text: str) -> dict[str, Any]:
    """The gateways document for an SMSConfig.xml; `ValueError` if it has no usable gateway."""
    try:
        root = ElementTree.fromstring(xml_text)
    except ElementTree.ParseError as error:
        raise ValueError(f"not XML: {error}") from error
    gateways = [_gateway(element) for element in root.iter("gateway")]
    if not gateways:
        raise ValueError("no <gateway> element")
    document = {"default_gateway": gateways[0]["id"], "gateways": gateways}
    GatewaysConfig.model_validate(document)  # what we print, outbound and ingress will load
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="twoway-migrate-smsconfig", description=__doc__)
    parser.add_argument("smsconfig", type=Path, help="the MobileFirst SMSConfig.xml")
    args = parser.parse_args(argv)
    try:
        document = convert(args.smsconfig.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        print(f"twoway-migrate-smsconfig: {error}", file=sys.stderr)
        return 1
    variables = sorted(
        name
        for gateway in document["gateways"]
        for name in gateway.get("secret_parameters", {}).values()
    )
    print(f"# From {args.smsconfig.name} by twoway-migrate-smsconfig.")
    if variables:
        print(f"# Set these environment variables to the secrets: {', '.join(variables)}")
    print(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), end="")
    return 0
