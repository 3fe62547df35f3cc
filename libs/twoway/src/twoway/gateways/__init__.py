"""Gateways: their configuration and, one module each, the dialects they speak.

Every dialect module exposes the same names (`Dialect`): outbound `build_requests` and
`classify`; inbound `parse_inbound`, `parse_status`, `check_signature` and the `answer` the
gateway expects. `DIALECTS` maps a gateway `type` (as written in the gateways YAML) to its
module: adding a gateway type is one module, one line here and one table of tests.
"""

from __future__ import annotations

from typing import Protocol

from twoway.gateways import infobip, kannel, mobilefirst, twilio, vonage, webhook
from twoway.gateways.base import (
    GatewayRequest,
    GatewayResponse,
    WebhookAnswer,
    WebhookRequest,
)
from twoway.gateways.config import GatewayConfig, GatewaySecrets
from twoway.gateways.encoding import SegmentedText
from twoway.gateways.results import SendResult
from twoway.messages import DeliveryEvent, InboundSMS, OutboundSMS


class Dialect(Protocol):
    """What a gateway dialect module provides (a module satisfies this protocol)."""

    SIGNS: bool
    """Whether the gateway signs its webhooks (`check_signature` can succeed)."""

    def build_requests(
        self,
        gateway: GatewayConfig,
        message: OutboundSMS,
        text: SegmentedText,
        secrets: GatewaySecrets,
    ) -> list[GatewayRequest]: ...

    def classify(self, response: GatewayResponse) -> SendResult: ...

    def parse_inbound(
        self, gateway: GatewayConfig, request: WebhookRequest, region: str
    ) -> list[InboundSMS]: ...

    def parse_status(
        self, gateway: GatewayConfig, request: WebhookRequest, secrets: GatewaySecrets
    ) -> list[DeliveryEvent]: ...

    def check_signature(
        self, gateway: GatewayConfig, request: WebhookRequest, secrets: GatewaySecrets
    ) -> bool: ...

    def answer(self, kind: str) -> WebhookAnswer: ...


DIALECTS: dict[str, Dialect] = {
    "mobilefirst-http": mobilefirst,
    "kannel": kannel,
    "twilio": twilio,
    "vonage": vonage,
    "infobip": infobip,
    "webhook": webhook,
}
