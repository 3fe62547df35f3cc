"""Whether a post to `/gateways/<id>/...` comes from that gateway: every configured check.

- `allow_from`: the source address is in one of the networks;
- `token`: the shared token is in the `token_param` query parameter or the `token_header` header;
- `signature`: the dialect's own signature verifies (on by default for twilio, whose every
  webhook is signed; vonage and webhook sign when the account is set up to).
"""

from __future__ import annotations

from ipaddress import ip_address

from twoway.gateways import Dialect
from twoway.gateways.base import WebhookRequest, same
from twoway.gateways.config import GatewayConfig, GatewaySecrets


def signature_required(gateway: GatewayConfig) -> bool:
    configured = gateway.inbound.signature
    return configured if configured is not None else gateway.type == "twilio"


def check_configuration(gateway: GatewayConfig, dialect: Dialect) -> None:
    """`ValueError` at start for a signature check this gateway type cannot do."""
    if signature_required(gateway) and not dialect.SIGNS:
        raise ValueError(f"gateway {gateway.id!r}: {gateway.type} gateways do not sign webhooks")


def _address_allowed(gateway: GatewayConfig, remote: str) -> bool:
    try:
        address = ip_address(remote)
    except ValueError:
        return False
    return any(address in network for network in gateway.inbound.allow_from)


def refusal(
    gateway: GatewayConfig, dialect: Dialect, request: WebhookRequest, secrets: GatewaySecrets
) -> str | None:
    """None when the post passes every check; otherwise why it does not (safe to log)."""
    auth = gateway.inbound
    if auth.allow_from and not _address_allowed(gateway, request.remote):
        return "source address not allowed"
    if secrets.inbound_token is not None:
        given = request.headers.get(auth.token_header.lower()) or dict(request.query).get(
            auth.token_param
        )
        if not same(secrets.inbound_token, given):
            return "missing or wrong token"
    if signature_required(gateway) and not dialect.check_signature(gateway, request, secrets):
        return "missing or bad signature"
    return None
