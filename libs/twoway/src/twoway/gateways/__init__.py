"""Gateways: their configuration and, one module each, the dialects they speak.

`OUTBOUND_DIALECTS` maps a gateway `type` (as written in the gateways YAML) to the function that
builds its send request: adding a gateway type is one module and one line here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from twoway.gateways import mobilefirst
from twoway.gateways.config import GatewayConfig
from twoway.gateways.mobilefirst import GatewayRequest
from twoway.messages import OutboundSMS

BuildRequest = Callable[[GatewayConfig, OutboundSMS, Mapping[str, str]], GatewayRequest]

OUTBOUND_DIALECTS: dict[str, BuildRequest] = {
    "mobilefirst-http": mobilefirst.build_request,
}
