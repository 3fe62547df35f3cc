"""Gateways: the YAML configuration, the MobileFirst request builder and result classification."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from twoway.gateways import DIALECTS
from twoway.gateways.base import GatewayRequest
from twoway.gateways.config import GatewayConfig, GatewaySecrets, load_gateways
from twoway.gateways.encoding import segment
from twoway.gateways.limits import InboundLimits, Window
from twoway.gateways.mobilefirst import build_requests
from twoway.gateways.results import classify_status, parse_retry_after
from twoway.messages import OutboundSMS

KEY = "test-reference-secret"

REPOSITORY = Path(__file__).resolve().parents[2]

TWO_GATEWAYS = """
default_gateway: sim
gateways:
  - id: sim
    type: mobilefirst-http
    url: http://127.0.0.1:8090/sendSMS
    default_sender: "12345"
    timeout: 5
  - id: kannel
    type: mobilefirst-http
    url: http://127.0.0.1:13013/cgi-bin/sendsms
    method: POST
    to_param: destination
    from_param: source
    text_param: body
    parameters: {user: twoway}
    secret_parameters: {password: KANNEL_PASSWORD}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateways.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def gateway(**overrides: Any) -> GatewayConfig:
    fields: dict[str, Any] = {
        "id": "sim",
        "type": "mobilefirst-http",
        "url": "http://127.0.0.1:8090/sendSMS",
    }
    fields.update(overrides)
    return GatewayConfig.model_validate(fields)


def test_load_gateways(tmp_path: Path) -> None:
    config = load_gateways(write(tmp_path, TWO_GATEWAYS))
    assert config.default_gateway == "sim"
    assert [item.id for item in config.gateways] == ["sim", "kannel"]
    sim, kannel = config.gateways
    assert sim.method == "GET"
    assert (sim.to_param, sim.from_param, sim.text_param) == ("to", "from", "text")
    assert sim.default_sender == "12345"
    assert sim.timeout == 5.0
    assert str(sim.url) == "http://127.0.0.1:8090/sendSMS"
    assert kannel.method == "POST"
    assert kannel.to_param == "destination"
    assert kannel.from_param == "source"
    assert kannel.text_param == "body"
    assert kannel.parameters == {"user": "twoway"}
    assert kannel.secret_parameters == {"password": "KANNEL_PASSWORD"}
    assert kannel.default_sender is None
    assert kannel.timeout == 10.0


def test_shipped_configuration_loads() -> None:
    config = load_gateways(REPOSITORY / "config" / "gateways.yaml")
    default = config.get(None)
    assert default is not None
    assert default.id == config.default_gateway
    assert default.type in DIALECTS


INBOUND_LIMITS: tuple[tuple[str, dict[str, Any], InboundLimits], ...] = (
    ("default", {}, InboundLimits(per_sender=Window(count=10, seconds=60), per_gateway=None)),
    ("sender-off", {"per_sender": None}, InboundLimits(per_sender=None)),
    (
        "gateway-on",
        {"per_gateway": {"count": 3000, "seconds": 60}},
        InboundLimits(per_gateway=Window(count=3000, seconds=60)),
    ),
)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [case[1:] for case in INBOUND_LIMITS],
    ids=[case[0] for case in INBOUND_LIMITS],
)
def test_inbound_limits(fields: dict[str, Any], expected: InboundLimits) -> None:
    assert gateway(inbound_limits=fields).inbound_limits == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"per_sender": {"count": 0, "seconds": 60}},
        {"per_sender": {"count": 10, "seconds": 86_401}},
        {"per_sender": {"count": 10}},
        {"per_ip": {"count": 10, "seconds": 60}},
    ],
    ids=["count-zero", "longer-than-a-day", "no-seconds", "unknown-limit"],
)
def test_bad_inbound_limits_rejected(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="inbound_limits"):
        gateway(inbound_limits=fields)


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [(None, "sim"), ("", "sim"), ("sim", "sim"), ("kannel", "kannel"), ("nowhere", None)],
    ids=["none-is-default", "empty-is-default", "default-by-name", "other", "unknown"],
)
def test_get(tmp_path: Path, wanted: str | None, expected: str | None) -> None:
    found = load_gateways(write(tmp_path, TWO_GATEWAYS)).get(wanted)
    assert (found.id if found else None) == expected


BAD_FILES = (
    (
        "duplicate-ids",
        """
        default_gateway: sim
        gateways:
          - {id: sim, type: mobilefirst-http, url: "http://a.example/send"}
          - {id: sim, type: mobilefirst-http, url: "http://b.example/send"}
        """,
        "unique",
    ),
    (
        "default-gateway-missing",
        """
        default_gateway: nowhere
        gateways:
          - {id: sim, type: mobilefirst-http, url: "http://a.example/send"}
        """,
        "nowhere",
    ),
    (
        "unknown-gateway-field",
        """
        default_gateway: sim
        gateways:
          - {id: sim, type: mobilefirst-http, url: "http://a.example/send", toParamName: to}
        """,
        "toParamName",
    ),
    (
        "unknown-top-level-field",
        """
        default_gateway: sim
        fallback: sim
        gateways:
          - {id: sim, type: mobilefirst-http, url: "http://a.example/send"}
        """,
        "fallback",
    ),
    (
        "unknown-type",
        """
        default_gateway: sim
        gateways:
          - {id: sim, type: carrier-pigeon, url: "http://a.example/send"}
        """,
        "type",
    ),
    (
        "bad-url",
        """
        default_gateway: sim
        gateways:
          - {id: sim, type: mobilefirst-http, url: "not a url"}
        """,
        "url",
    ),
    (
        "bad-id",
        """
        default_gateway: "my gw"
        gateways:
          - {id: "my gw", type: mobilefirst-http, url: "http://a.example/send"}
        """,
        "id",
    ),
    (
        "timeout-zero",
        """
        default_gateway: sim
        gateways:
          - {id: sim, type: mobilefirst-http, url: "http://a.example/send", timeout: 0}
        """,
        "timeout",
    ),
    ("no-gateways", "default_gateway: sim\ngateways: []\n", "gateways"),
    ("empty-file", "", "GatewaysConfig"),
)


@pytest.mark.parametrize(
    ("text", "mentions"), [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES]
)
def test_bad_configuration_rejected(tmp_path: Path, text: str, mentions: str) -> None:
    with pytest.raises(ValidationError) as caught:
        load_gateways(write(tmp_path, text))
    assert mentions in str(caught.value)


def test_secrets_from_environment() -> None:
    config = gateway(
        secret_parameters={"password": "GW_PASSWORD", "key": "GW_KEY"},
        secret="GW_TOKEN",
        inbound={"token": "GW_INBOUND"},
    )
    environ = {"GW_PASSWORD": "s3cret", "GW_KEY": "k", "GW_TOKEN": "t", "GW_INBOUND": "i"}
    assert config.secrets(environ, reference_secret=KEY) == GatewaySecrets(
        parameters={"password": "s3cret", "key": "k"},
        reference_secret=KEY,
        secret="t",
        signature_secret="t",
        inbound_token="i",
    )
    assert gateway().secrets({}, reference_secret=KEY) == GatewaySecrets(
        parameters={}, reference_secret=KEY
    )


def test_secrets_need_a_reference_secret_and_never_show_it() -> None:
    with pytest.raises(ValueError, match="reference_secret"):
        gateway().secrets({}, reference_secret="")
    assert KEY not in repr(gateway().secrets({}, reference_secret=KEY))


def test_signature_secret_of_its_own() -> None:
    config = gateway(secret="GW_TOKEN", signature_secret="GW_SIGNING")
    secrets = config.secrets({"GW_TOKEN": "t", "GW_SIGNING": "s"}, reference_secret=KEY)
    assert (secrets.secret, secrets.signature_secret) == ("t", "s")


@pytest.mark.parametrize(
    "fields",
    [
        {"secret_parameters": {"password": "GW_PASSWORD", "key": "GW_KEY"}},
        {"secret": "GW_PASSWORD", "secret_parameters": {"key": "GW_KEY"}},
        {"signature_secret": "GW_PASSWORD", "secret_parameters": {"key": "GW_KEY"}},
        {"inbound": {"token": "GW_PASSWORD"}, "secret_parameters": {"key": "GW_KEY"}},
    ],
    ids=["parameter", "secret", "signature-secret", "inbound-token"],
)
def test_missing_secret_names_the_variable(fields: dict[str, Any]) -> None:
    config = gateway(**fields)
    with pytest.raises(KeyError) as caught:
        config.secrets({"GW_KEY": "k"}, reference_secret=KEY)
    assert "GW_PASSWORD" in str(caught.value)
    assert "GW_KEY" not in str(caught.value)
    assert "'sim'" in str(caught.value)


@dataclass(frozen=True)
class RequestCase:
    id: str
    gateway: dict[str, Any]
    message: dict[str, Any]
    secrets: dict[str, str]
    params: dict[str, str]
    method: str = "GET"


REQUEST_CASES = (
    RequestCase(
        "default-names-and-default-sender",
        {"default_sender": "12345"},
        {},
        {},
        {"to": "+14155552671", "text": "hi", "from": "12345"},
    ),
    RequestCase(
        "configured-param-names",
        {"to_param": "destination", "from_param": "source", "text_param": "body"},
        {"from_": "777"},
        {},
        {"destination": "+14155552671", "body": "hi", "source": "777"},
    ),
    RequestCase(
        "message-from-over-default-sender",
        {"default_sender": "12345"},
        {"from_": "777"},
        {},
        {"to": "+14155552671", "text": "hi", "from": "777"},
    ),
    RequestCase(
        "no-from-param-when-neither",
        {},
        {},
        {},
        {"to": "+14155552671", "text": "hi"},
    ),
    RequestCase(
        "fixed-params-and-secrets",
        {"parameters": {"user": "twoway", "dlr": "1"}},
        {},
        {"password": "s3cret"},
        {"user": "twoway", "dlr": "1", "password": "s3cret", "to": "+14155552671", "text": "hi"},
    ),
    RequestCase(
        "message-fields-beat-fixed-params",
        {"parameters": {"to": "nobody", "text": "fixed"}},
        {},
        {},
        {"to": "+14155552671", "text": "hi"},
    ),
    RequestCase(
        "secret-beats-fixed-param",
        {"parameters": {"password": "placeholder"}},
        {},
        {"password": "s3cret"},
        {"password": "s3cret", "to": "+14155552671", "text": "hi"},
    ),
    RequestCase(
        "post-method", {"method": "POST"}, {}, {}, {"to": "+14155552671", "text": "hi"}, "POST"
    ),
)


@pytest.mark.parametrize("case", REQUEST_CASES, ids=[case.id for case in REQUEST_CASES])
def test_build_request(case: RequestCase) -> None:
    config = gateway(**case.gateway)
    message = OutboundSMS(to="+14155552671", text="hi", **case.message)
    secrets = GatewaySecrets(parameters=case.secrets, reference_secret=KEY)
    url = "http://127.0.0.1:8090/sendSMS"
    expected = (
        GatewayRequest("GET", url, params=case.params)
        if case.method == "GET"
        else GatewayRequest("POST", url, form=case.params)
    )
    assert build_requests(config, message, segment("hi"), secrets) == [expected]
    assert DIALECTS[config.type].build_requests(config, message, segment("hi"), secrets) == [
        expected
    ]


CLASSIFY_CASES = (
    ("200-ok", 200, None, "success", None),
    ("202-accepted", 202, None, "success", None),
    ("204-no-content", 204, None, "success", None),
    ("400-bad-request", 400, None, "permanent", None),
    ("401-unauthorised", 401, None, "permanent", None),
    ("403-forbidden", 403, None, "permanent", None),
    ("404-not-found", 404, None, "permanent", None),
    ("429-no-retry-after", 429, None, "retry", None),
    ("429-retry-after-seconds", 429, "30", "retry", 30.0),
    ("429-retry-after-garbage", 429, "soon", "retry", None),
    ("500-server-error", 500, None, "retry", None),
    ("502-bad-gateway", 502, None, "retry", None),
    ("503-retry-after", 503, "120", "retry", 120.0),
)


@pytest.mark.parametrize(
    ("status", "retry_after", "outcome", "seconds"),
    [case[1:] for case in CLASSIFY_CASES],
    ids=[case[0] for case in CLASSIFY_CASES],
)
def test_classify_status(
    status: int, retry_after: str | None, outcome: str, seconds: float | None
) -> None:
    result = classify_status(status, "0: Accepted for delivery", retry_after)
    assert result.outcome == outcome
    assert result.retry_after == seconds
    assert result.detail == f"HTTP {status}: 0: Accepted for delivery"


def test_classify_status_detail_is_short() -> None:
    result = classify_status(500, "x" * 10_000)
    assert result.detail == "HTTP 500: " + "x" * 200
    assert classify_status(200, "").detail == "HTTP 200:"


NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)

RETRY_AFTER_CASES = (
    ("seconds", "120", 120.0),
    ("zero-seconds", "0", 0.0),
    ("padded-seconds", " 7 ", 7.0),
    ("http-date-in-future", "Wed, 21 Oct 2015 07:29:30 GMT", 90.0),
    ("http-date-now", "Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ("http-date-in-past-is-zero", "Wed, 21 Oct 2015 07:00:00 GMT", 0.0),
    ("http-date-with-offset", "Wed, 21 Oct 2015 09:29:00 +0200", 60.0),
    ("none", None, None),
    ("empty", "", None),
    ("garbage", "soon", None),
    ("negative", "-5", None),
    ("fraction", "1.5", None),
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [case[1:] for case in RETRY_AFTER_CASES],
    ids=[case[0] for case in RETRY_AFTER_CASES],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    "value",
    ["Wed, 21 Oct 2015 07:29:00", "Wed, 21 Oct 2015 07:29:00 -0000"],
    ids=["no-zone", "minus-zero-zone"],
)
def test_parse_retry_after_naive_date(value: str) -> None:
    assert parse_retry_after(value, now=NOW) == 60.0


def test_parse_retry_after_superscript_digit() -> None:
    assert parse_retry_after("²", now=NOW) is None
