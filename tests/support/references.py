"""The test deployment's reference secret, and the references ingress accepts with it."""

from __future__ import annotations

from twoway.gateways.base import encode_reference
from twoway.gateways.config import GatewayConfig, GatewaySecrets
from twoway.messages import OutboundSMS

REFERENCE_SECRET = "test-reference-secret"
"""`TWOWAY_REFERENCE_SECRET` of every service the tests start (`make_settings`)."""


def signed_reference(
    gateway_id: str, message_id: str, adapter: str | None = None, secret: str = REFERENCE_SECRET
) -> str:
    """The reference outbound gives gateway `gateway_id` for a message."""
    gateway = GatewayConfig.model_validate(
        {"id": gateway_id, "type": "webhook", "url": "http://127.0.0.1:1/"}
    )
    message = OutboundSMS(message_id=message_id, to="+15550000000", text="", adapter=adapter)
    return encode_reference(
        gateway, GatewaySecrets(parameters={}, reference_secret=secret), message
    )
