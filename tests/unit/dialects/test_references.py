"""Our signed reference in every dialect's delivery reports: only a reference we gave this
gateway for this message is believed, and a report's `detail` is capped."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest

from tests.support.references import signed_reference
from tests.unit.dialects.helpers import (
    MESSAGE_ID,
    PUBLIC,
    form_post,
    gateway,
    get,
    json_post,
    outbound,
    reference,
    secrets,
)
from twoway.gateways import DIALECTS
from twoway.gateways.base import (
    MAX_DETAIL,
    ForgedReference,
    InvalidWebhook,
    WebhookRequest,
    decode_reference,
    encode_reference,
)
from twoway.gateways.config import GatewayConfig
from twoway.messages import DeliveryEvent


@dataclass(frozen=True)
class Reports:
    """A gateway of one dialect and how it posts a delivery report: with our reference (None:
    without one) and a text of its own that ends up in the report's `detail`."""

    config: GatewayConfig
    post: Callable[[GatewayConfig, str | None, str], WebhookRequest]

    def parse(self, reference: str | None, text: str = "why") -> list[DeliveryEvent]:
        dialect = DIALECTS[self.config.type]
        return dialect.parse_status(self.config, self.post(self.config, reference, text), secrets())


def _url(config: GatewayConfig, reference: str | None) -> str:
    """The status URL, with `ref` in its query as `status_url` puts it."""
    query = "" if reference is None else "?" + urlencode({"ref": reference})
    return f"{PUBLIC}/gateways/{config.id}/status{query}"


def _present(**fields: str | None) -> dict[str, str]:
    return {key: value for key, value in fields.items() if value is not None}


def _kannel(config: GatewayConfig, reference: str | None, text: str) -> WebhookRequest:
    query = _present(ref=reference, type="16", smsc_id="0A1B", answer=text)
    return get(f"{PUBLIC}/gateways/{config.id}/status?{urlencode(query)}")


def _twilio(config: GatewayConfig, reference: str | None, text: str) -> WebhookRequest:
    fields = {"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": text}
    return form_post(_url(config, reference), fields)


def _vonage(config: GatewayConfig, reference: str | None, text: str) -> WebhookRequest:
    receipt = _present(**{"messageId": "0A1B", "status": "failed", "err-code": text})
    return json_post(_url(config, None), receipt | _present(**{"client-ref": reference}))


def _infobip(config: GatewayConfig, reference: str | None, text: str) -> WebhookRequest:
    result = {"messageId": MESSAGE_ID, "status": {"groupName": "REJECTED", "name": text}}
    document = {"results": [result | _present(callbackData=reference)]}
    return json_post(_url(config, None), document)


def _ours(config: GatewayConfig, reference: str | None, text: str) -> WebhookRequest:
    """mobilefirst-http and webhook: `ref` in the status URL, `status` and `detail`."""
    return json_post(_url(config, reference), {"status": "failed", "detail": text})


REPORTS = {
    "kannel": Reports(gateway("kannel", account="twoway", secret="PW"), _kannel),
    "twilio": Reports(gateway("twilio", account="AC1", secret="TOKEN"), _twilio),
    "vonage": Reports(gateway("vonage", account="abcd1234", secret="SECRET"), _vonage),
    "infobip": Reports(gateway("infobip", secret="KEY"), _infobip),
    "mobilefirst-http": Reports(gateway("mobilefirst-http"), _ours),
    "webhook": Reports(gateway("webhook"), _ours),
}


@pytest.fixture(params=sorted(REPORTS))
def dialect(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_every_dialect_has_a_table_row() -> None:
    assert set(REPORTS) == set(DIALECTS)


def test_a_reference_we_gave_the_gateway_is_believed(dialect: str) -> None:
    reports = REPORTS[dialect]
    [event] = reports.parse(reference(reports.config))
    assert (event.outbound_id, event.adapter, event.gateway_id, event.status) == (
        MESSAGE_ID,
        "bank",
        reports.config.id,
        "failed",
    )


def _forged_id(config: GatewayConfig) -> str:
    return reference(config).replace(MESSAGE_ID, "01JDQ6ZZZZZZZZZZZZZZZZZZZZ")


def _other_adapter(config: GatewayConfig) -> str:
    return reference(config).replace(":bank:", ":other:")


def _other_gateway(config: GatewayConfig) -> str:
    return signed_reference("elsewhere", MESSAGE_ID, "bank")


def _other_secret(config: GatewayConfig) -> str:
    return signed_reference(config.id, MESSAGE_ID, "bank", secret="another-deployment-key")


def _truncated(config: GatewayConfig) -> str:
    return reference(config)[:-4]


def _signature_only(config: GatewayConfig) -> str:
    return reference(config).rpartition(":")[2]


FORGERIES: tuple[tuple[str, Callable[[GatewayConfig], str]], ...] = (
    ("forged-message-id", _forged_id),
    ("other-adapter", _other_adapter),
    ("signed-for-another-gateway", _other_gateway),
    ("signed-with-another-secret", _other_secret),
    ("truncated-signature", _truncated),
    ("signature-only", _signature_only),
    ("unsigned", lambda config: f"{MESSAGE_ID}:bank"),
    ("unsigned-no-adapter", lambda config: f"{MESSAGE_ID}:"),
    ("bare-message-id", lambda config: MESSAGE_ID),  # a gateway echoing our id as its own
    ("empty-signature", lambda config: f"{MESSAGE_ID}:bank:"),
)


@pytest.mark.parametrize("forge", [c[1] for c in FORGERIES], ids=[c[0] for c in FORGERIES])
def test_a_reference_we_did_not_sign_for_the_gateway_is_refused(
    dialect: str, forge: Callable[[GatewayConfig], str]
) -> None:
    reports = REPORTS[dialect]
    with pytest.raises(ForgedReference) as refused:
        reports.parse(forge(reports.config))
    assert (refused.value.status, refused.value.code) == (403, "bad_reference")


def test_a_report_without_a_reference_is_refused(dialect: str) -> None:
    with pytest.raises(InvalidWebhook) as refused:
        REPORTS[dialect].parse(None)
    assert not isinstance(refused.value, ForgedReference)
    assert (refused.value.status, refused.value.code) == (422, "missing_field")


def test_the_gateways_text_in_detail_is_capped(dialect: str) -> None:
    reports = REPORTS[dialect]
    [event] = reports.parse(reference(reports.config), "x" * 5000)
    assert "xxx" in event.detail
    assert len(event.detail) == MAX_DETAIL


def test_one_forged_result_refuses_the_whole_post() -> None:
    reports = REPORTS["infobip"]
    good = json.loads(reports.post(reports.config, reference(reports.config), "ok").body)
    forged = json.loads(reports.post(reports.config, f"{MESSAGE_ID}:bank", "ok").body)
    document = {"results": good["results"] + forged["results"]}
    with pytest.raises(ForgedReference):
        DIALECTS["infobip"].parse_status(
            reports.config, json_post(_url(reports.config, None), document), secrets()
        )


@pytest.mark.parametrize(
    ("message_id", "adapter"),
    [
        ("01JDQ6R5Z8X0M4N3K2P1Q0R9S8", "bank"),
        ("01JD", None),
        ("urn:uuid:1234", "a.b-c"),
        ("urn:uuid:1", None),
    ],
    ids=["ulid-and-adapter", "no-adapter", "id-with-colons", "id-with-colons-no-adapter"],
)
def test_reference_round_trip(message_id: str, adapter: str | None) -> None:
    config = REPORTS["kannel"].config
    encoded = encode_reference(config, secrets(), outbound(message_id=message_id, adapter=adapter))
    assert decode_reference(config, secrets(), encoded) == (message_id, adapter)


def test_a_reference_fits_vonages_client_ref_with_a_50_character_adapter() -> None:
    config = REPORTS["vonage"].config
    encoded = encode_reference(config, secrets(), outbound(adapter="a" * 50))
    assert len(encoded) <= 100  # client-ref's limit (Vonage's SDK: max_length=100)
