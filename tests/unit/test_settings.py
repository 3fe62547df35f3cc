"""Settings: `TWOWAY_`-prefixed environment variables, defaults and validation."""

from __future__ import annotations

import os
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from tests.support.references import REFERENCE_SECRET
from twoway.broker import ReconnectDelay
from twoway.settings import TwowaySettings, WorkerSettings
from twoway_gateway_sim.settings import GatewaySimSettings
from twoway_ingress.settings import IngressSettings
from twoway_outbound.settings import OutboundSettings
from twoway_router.settings import RouterSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults must not depend on whatever TWOWAY_ variables the shell running the tests has;
    only the reference secret ingress and outbound cannot start without is set."""
    for name in list(os.environ):
        if name.upper().startswith("TWOWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TWOWAY_REFERENCE_SECRET", REFERENCE_SECRET)


def test_defaults() -> None:
    settings = TwowaySettings()
    assert settings.amqp_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.mongo_url == "mongodb://127.0.0.1:27017/?directConnection=true"
    assert settings.mongo_database == "twoway"
    assert settings.log_format == "json"
    assert settings.log_level == "INFO"
    assert settings.prefetch == 64
    assert settings.prefetch > 1
    assert settings.publish_timeout == 5.0
    assert (settings.reconnect_interval, settings.reconnect_jitter) == (1.0, 0.5)
    # What a service waits between attempts at the broker is what `connect` waits by default.
    assert (
        ReconnectDelay(settings.reconnect_interval, settings.reconnect_jitter) == ReconnectDelay()
    )
    assert settings.default_region == "US"
    assert settings.host == "127.0.0.1"


def test_a_worker_tries_a_message_five_times_by_default() -> None:
    assert WorkerSettings().max_deliveries == 5


@pytest.mark.parametrize(
    ("settings_class", "port"),
    [
        (IngressSettings, 8080),
        (GatewaySimSettings, 8090),
        (RouterSettings, 9101),
        (OutboundSettings, 9102),
        (WorkerSettings, 0),
    ],
    ids=["ingress", "gateway-sim", "router", "outbound", "worker"],
)
def test_default_ports(settings_class: type[Any], port: int) -> None:
    assert settings_class().port == port


@pytest.mark.parametrize(
    "settings_class", [IngressSettings, OutboundSettings], ids=["ingress", "outbound"]
)
@pytest.mark.parametrize("secret", [None, "", "short"], ids=["unset", "empty", "too-short"])
def test_no_signing_service_starts_without_a_reference_secret(
    settings_class: type[Any], secret: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TWOWAY_REFERENCE_SECRET")
    if secret is not None:
        monkeypatch.setenv("TWOWAY_REFERENCE_SECRET", secret)
    with pytest.raises(ValidationError, match="reference_secret"):
        settings_class()


def test_the_reference_secret_is_read_but_never_shown() -> None:
    settings = IngressSettings()
    assert settings.reference_secret.get_secret_value() == REFERENCE_SECRET
    assert REFERENCE_SECRET not in repr(settings)


ENV_CASES = (
    (
        "amqp-url",
        "TWOWAY_AMQP_URL",
        "amqp://u:p@broker:5673/vh",
        "amqp_url",
        "amqp://u:p@broker:5673/vh",
    ),
    ("mongo-database", "TWOWAY_MONGO_DATABASE", "other", "mongo_database", "other"),
    ("log-format", "TWOWAY_LOG_FORMAT", "console", "log_format", "console"),
    ("log-level", "TWOWAY_LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
    ("prefetch-int", "TWOWAY_PREFETCH", "256", "prefetch", 256),
    ("publish-timeout-float", "TWOWAY_PUBLISH_TIMEOUT", "0.5", "publish_timeout", 0.5),
    ("region", "TWOWAY_DEFAULT_REGION", "GB", "default_region", "GB"),
    ("reconnect-interval", "TWOWAY_RECONNECT_INTERVAL", "0.25", "reconnect_interval", 0.25),
    ("reconnect-jitter", "TWOWAY_RECONNECT_JITTER", "0", "reconnect_jitter", 0.0),
    ("lower-case-name", "twoway_host", "0.0.0.0", "host", "0.0.0.0"),
)


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [case[1:] for case in ENV_CASES],
    ids=[case[0] for case in ENV_CASES],
)
def test_read_from_prefixed_environment(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, attribute: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(TwowaySettings(), attribute) == expected


def test_unprefixed_variables_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://elsewhere/")
    monkeypatch.setenv("PREFETCH", "0")
    settings = TwowaySettings()
    assert settings.amqp_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.prefetch == 64


def test_service_settings_read_their_own_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWOWAY_PORT", "18080")
    monkeypatch.setenv("TWOWAY_RETRY_DELAYS", "[2, 4, 8]")
    monkeypatch.setenv("TWOWAY_PREFETCH", "10")
    outbound = OutboundSettings()
    assert outbound.port == 18080
    assert outbound.retry_delays == [2, 4, 8]
    assert outbound.prefetch == 10
    assert IngressSettings().port == 18080


def test_explicit_arguments_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWOWAY_PREFETCH", "10")
    assert TwowaySettings(prefetch=20).prefetch == 20


def test_settings_are_frozen() -> None:
    settings = TwowaySettings()
    with pytest.raises(ValidationError):
        settings.prefetch = 2  # type: ignore[misc]


INVALID_CASES = (
    ("prefetch-zero", "TWOWAY_PREFETCH", "0", "prefetch", TwowaySettings),
    ("prefetch-negative", "TWOWAY_PREFETCH", "-5", "prefetch", TwowaySettings),
    ("prefetch-not-a-number", "TWOWAY_PREFETCH", "many", "prefetch", TwowaySettings),
    ("publish-timeout-zero", "TWOWAY_PUBLISH_TIMEOUT", "0", "publish_timeout", TwowaySettings),
    (
        "reconnect-interval-zero",
        "TWOWAY_RECONNECT_INTERVAL",
        "0",
        "reconnect_interval",
        TwowaySettings,
    ),
    ("reconnect-jitter-whole", "TWOWAY_RECONNECT_JITTER", "1", "reconnect_jitter", TwowaySettings),
    ("log-format-unknown", "TWOWAY_LOG_FORMAT", "xml", "log_format", TwowaySettings),
    ("log-level-lower-case", "TWOWAY_LOG_LEVEL", "debug", "log_level", TwowaySettings),
    ("region-three-letters", "TWOWAY_DEFAULT_REGION", "USA", "default_region", TwowaySettings),
    ("port-too-large", "TWOWAY_PORT", "70000", "port", IngressSettings),
    ("shutdown-grace-zero", "TWOWAY_SHUTDOWN_GRACE", "0", "shutdown_grace", WorkerSettings),
    ("max-deliveries-zero", "TWOWAY_MAX_DELIVERIES", "0", "max_deliveries", WorkerSettings),
    # above the queues' own x-delivery-limit, the broker would dead-letter without our reason
    ("max-deliveries-over-limit", "TWOWAY_MAX_DELIVERIES", "21", "max_deliveries", WorkerSettings),
    ("retry-delays-empty", "TWOWAY_RETRY_DELAYS", "[]", "retry_delays", OutboundSettings),
    ("max-attempts-zero", "TWOWAY_MAX_ATTEMPTS", "0", "max_attempts", OutboundSettings),
)


@pytest.mark.parametrize(
    ("variable", "value", "field", "settings_class"),
    [case[1:] for case in INVALID_CASES],
    ids=[case[0] for case in INVALID_CASES],
)
def test_invalid_values_rejected(
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    field: str,
    settings_class: type[BaseSettings],
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        settings_class()
    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


def test_prefetch_zero_rejected_as_an_argument() -> None:
    with pytest.raises(ValidationError) as caught:
        TwowaySettings(prefetch=0)
    assert caught.value.errors()[0]["type"] == "greater_than_equal"
