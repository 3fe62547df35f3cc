"""`/subscribeSMS` without I/O: its parameters, its modes (off, gateway, public) and the pure parts
of its confirmation codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from pydantic import ValidationError

from twoway.gateways import DIALECTS
from twoway.gateways.config import GatewayConfig, GatewaySecrets
from twoway.http_errors import InvalidRequest
from twoway_ingress.confirmations import SubscriptionChange, code_hash, new_code, seconds_until
from twoway_ingress.gateways import ENDPOINTS, Gateway, GatewayEndpoints
from twoway_ingress.settings import IngressSettings
from twoway_ingress.subscribe import SubscribeRequest, add_subscribe_route, parse_subscribe_request

NEWS = "bank.News"


def change(phone: str = "+15551234567", **fields: Any) -> SubscriptionChange:
    return SubscriptionChange(**{"subscribe": True, "event_source": NEWS, "phone": phone, **fields})


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(
            {"eventSource": NEWS, "phoneNumber": "+15551234567"},
            SubscribeRequest(change()),
            id="subscribe",
        ),
        pytest.param(
            {"eventSource": f" {NEWS} ", "phoneNumber": "555-123 4567", "option": " "},
            SubscribeRequest(change()),
            id="blank-option-subscribes-national-number",
        ),
        pytest.param(
            {"eventSource": NEWS, "phoneNumber": "5551234567", "option": "unsubscribe"},
            SubscribeRequest(change(subscribe=False)),
            id="option-unsubscribes",
        ),
        pytest.param(
            {"eventSource": NEWS, "phoneNumber": " 447911123456"},
            SubscribeRequest(change("+447911123456")),
            id="plus-decoded-as-space",
        ),
        pytest.param(
            {"eventSource": NEWS, "phoneNumber": "5551234567", "userName": " ann ", "alias": ""},
            SubscribeRequest(change(user_name="ann")),
            id="user-name-alias",
        ),
        pytest.param(
            {"eventSource": NEWS, "phoneNumber": "5551234567", "code": " 012345 "},
            SubscribeRequest(change(), "012345"),
            id="code",
        ),
        pytest.param(
            {"eventSource": NEWS, "phoneNumber": "5551234567", "code": ""},
            SubscribeRequest(change()),
            id="blank-code-asks-for-one",
        ),
    ],
)
def test_servlet_parameters(query: dict[str, str], expected: SubscribeRequest) -> None:
    assert parse_subscribe_request(query, "US") == expected


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        pytest.param({"phoneNumber": "5551234567"}, "missing_field", "eventSource", id="no-source"),
        pytest.param(
            {"eventSource": "News", "phoneNumber": "5551234567"},
            "invalid_field",
            "eventSource",
            id="not-adapter-dot-source",
        ),
        pytest.param({"eventSource": NEWS}, "missing_field", "phoneNumber", id="no-phone"),
        pytest.param(
            {"eventSource": NEWS, "phoneNumber": "  "},
            "missing_field",
            "phoneNumber",
            id="blank-phone",
        ),
        pytest.param(
            {"eventSource": NEWS, "phoneNumber": "555.123.4567"},
            "invalid_field",
            "phoneNumber",
            id="dots",
        ),
        pytest.param(
            {"eventSource": NEWS, "phoneNumber": "tel:5551234567"},
            "invalid_field",
            "phoneNumber",
            id="letters",
        ),
        pytest.param(
            {"eventSource": NEWS, "phoneNumber": "123"}, "invalid_field", "phoneNumber", id="short"
        ),
    ],
)
def test_bad_servlet_parameters_name_the_field(
    query: dict[str, str], code: str, field: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_subscribe_request(query, "US")
    assert (refused.value.status, refused.value.code, refused.value.field) == (422, code, field)


def test_off_is_the_default() -> None:
    assert IngressSettings.model_fields["subscribe_mode"].default == "off"


@pytest.mark.parametrize(
    ("fields", "valid"),
    [
        pytest.param({"subscribe_mode": "off"}, True, id="off"),
        pytest.param({"subscribe_mode": "public"}, True, id="public"),
        pytest.param({"subscribe_mode": "gateway", "subscribe_gateway": "sim"}, True, id="gateway"),
        pytest.param({"subscribe_mode": "gateway"}, False, id="gateway-without-one"),
        pytest.param({"subscribe_mode": "open"}, False, id="unknown-mode"),
        pytest.param({"subscribe_code_ttl_seconds": 10}, False, id="code-ttl-too-short"),
        pytest.param({"subscribe_code_attempts": 0}, False, id="no-attempts"),
        pytest.param({"subscribe_code_interval_seconds": 0}, False, id="no-interval"),
    ],
)
def test_subscribe_settings(fields: dict[str, Any], valid: bool) -> None:
    if valid:
        IngressSettings(**SECRET, **fields)
    else:
        with pytest.raises(ValidationError):
            IngressSettings(**SECRET, **fields)


SECRET: dict[str, Any] = {"reference_secret": "r" * 16}


def app_with_sim_gateway(settings: IngressSettings) -> web.Application:
    app = web.Application()
    sim = GatewayConfig(id="sim", type="mobilefirst-http", url="http://127.0.0.1:9/sendSMS")
    gateway = Gateway(
        sim, DIALECTS[sim.type], GatewaySecrets(parameters={}, reference_secret="r" * 16)
    )
    app[ENDPOINTS] = GatewayEndpoints({"sim": gateway}, settings, ())
    return app


@pytest.mark.parametrize(
    ("fields", "needs_database"),
    [
        pytest.param({}, False, id="off"),
        pytest.param({"subscribe_mode": "public"}, True, id="public"),
        pytest.param({"subscribe_mode": "gateway", "subscribe_gateway": "sim"}, True, id="gateway"),
    ],
)
def test_only_an_open_mode_sets_up_subscriptions(
    fields: dict[str, Any], needs_database: bool
) -> None:
    settings = IngressSettings(**SECRET, **fields)
    app = app_with_sim_gateway(settings)
    add_subscribe_route(app, settings)
    assert [
        (resource.canonical, [route.method for route in resource])
        for resource in app.router.resources()
    ] == [("/subscribeSMS", ["GET"])]
    assert bool(app.cleanup_ctx) == needs_database


async def test_off_refuses_every_request() -> None:
    settings = IngressSettings(**SECRET, subscribe_mode="off")
    app = app_with_sim_gateway(settings)
    add_subscribe_route(app, settings)
    request = make_mocked_request(
        "GET", f"/subscribeSMS?eventSource={NEWS}&phoneNumber=5551234567", app=app
    )
    match = await app.router.resolve(request)
    with pytest.raises(InvalidRequest) as refused:
        await match.handler(request)
    assert (refused.value.status, refused.value.code) == (404, "not_enabled")


def test_gateway_mode_needs_a_configured_gateway() -> None:
    settings = IngressSettings(**SECRET, subscribe_mode="gateway", subscribe_gateway="kannel")
    with pytest.raises(ValueError, match="kannel"):
        add_subscribe_route(app_with_sim_gateway(settings), settings)


def test_codes_are_six_random_digits() -> None:
    codes = {new_code() for _ in range(50)}
    assert all(len(code) == 6 and code.isdigit() for code in codes)
    assert len(codes) > 1


def test_a_code_is_stored_hashed_and_bound_to_its_number() -> None:
    stored = code_hash("+15551234567", "123456")
    assert "123456" not in stored
    assert stored == code_hash("+15551234567", "123456")
    assert stored != code_hash("+15557654321", "123456")


NOW = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "seconds"),
    [
        pytest.param(NOW + timedelta(seconds=59.2), 60, id="rounded-up"),
        pytest.param(NOW + timedelta(seconds=1), 1, id="one"),
        pytest.param(NOW, 1, id="now-is-one"),
        pytest.param(NOW - timedelta(seconds=5), 1, id="past-is-one"),
    ],
)
def test_retry_after_is_whole_seconds_at_least_one(moment: datetime, seconds: int) -> None:
    assert seconds_until(moment, NOW) == seconds
