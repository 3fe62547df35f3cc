"""Whether a post to `/gateways/<id>/...` comes from that gateway: every configured check.

- `allow_from`: the source address is in one of the networks;
- `token`: the shared token is in the `token_param` query parameter or the `token_header` header;
- `basic_auth`: the HTTP basic credentials are the configured user and password;
- `signature`: the dialect's own signature verifies (on by default for twilio, whose every
  webhook is signed; vonage and webhook sign when the account is set up to).

A gateway with none of them refuses to start unless it says `open: true`: then anyone may post
as that gateway, which ingress warns about at start and counts on every post.
"""

from __future__ import annotations

import base64
import binascii
from ipaddress import ip_address

from twoway.gateways import Dialect
from twoway.gateways.base import WebhookRequest, same
from twoway.gateways.config import GatewayConfig, GatewaySecrets


def signature_required(gateway: GatewayConfig) -> bool:
    configured = gateway.inbound.signature
    return configured if configured is not None else gateway.type == "twilio"


def has_checks(gateway: GatewayConfig) -> bool:
    auth = gateway.inbound
    return bool(auth.allow_from or auth.token or auth.basic_auth or signature_required(gateway))


def check_configuration(gateway: GatewayConfig, dialect: Dialect) -> None:
    """`ValueError` at start for a signature check this gateway type cannot do, and for a
    gateway that checks nothing without saying `open: true` (or says it and checks anyway)."""
    if signature_required(gateway) and not dialect.SIGNS:
        raise ValueError(f"gateway {gateway.id!r}: {gateway.type} gateways do not sign webhooks")
    if not has_checks(gateway) and not gateway.inbound.open:
        raise ValueError(
            f"gateway {gateway.id!r} checks nothing on its inbound posts: configure `inbound` "
            "(token, basic_auth, allow_from or signature), or `inbound: {open: true}` to let "
            "anyone post as this gateway"
        )
    if has_checks(gateway) and gateway.inbound.open:
        raise ValueError(f"gateway {gateway.id!r}: `open: true` with checks configured")


def _basic_credentials(request: WebhookRequest) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, separator, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if separator else None


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
    if auth.basic_auth is not None:
        credentials = _basic_credentials(request)
        if credentials is None or not (
            same(auth.basic_auth.username, credentials[0])
            & same(secrets.inbound_password or "", credentials[1])
        ):
            return "missing or wrong basic auth credentials"
    if signature_required(gateway) and not dialect.check_signature(gateway, request, secrets):
        return "missing or bad signature"
    return None
