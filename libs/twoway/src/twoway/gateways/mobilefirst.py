"""The MobileFirst generic HTTP gateway (SMSConfig.xml): one request with configurable names.

`GET http://host:port/programName?to=..&text=..&from=..` plus fixed parameters (or the same as a
form POST). Any 2xx is success; see `twoway.gateways.results` for the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from twoway.gateways.config import GatewayConfig
from twoway.messages import OutboundSMS


@dataclass(frozen=True)
class GatewayRequest:
    method: str
    url: str
    params: dict[str, str]


def build_request(
    gateway: GatewayConfig, message: OutboundSMS, secrets: Mapping[str, str]
) -> GatewayRequest:
    params = {
        **gateway.parameters,
        **secrets,
        gateway.to_param: message.to,
        gateway.text_param: message.text,
    }
    sender = message.from_ or gateway.default_sender
    if sender:
        params[gateway.from_param] = sender
    return GatewayRequest(gateway.method, str(gateway.url), params)
