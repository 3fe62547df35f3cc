"""`/gateways/{id}/inbound` and `/status` on a real broker, one gateway of each kind.

Every dialect owes the same checks: an unknown gateway is 404 JSON, a post failing the gateway's
authenticity checks is 403 and logged without its body, the answer is the one that gateway
expects, and what it posted is on the broker before it is answered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aio_pika.abc import AbstractRobustConnection
from pymongo.asynchronous.database import AsyncDatabase
from twilio.request_validator import RequestValidator
from vonage_http_client import Auth  # type: ignore[import-untyped]

from tests.support.broker import drain, queue_length
from tests.support.references import signed_reference
from tests.support.servers import serving
from twoway.messages import DeliveryEvent, InboundSMS, utc_now
from twoway.service import AMQP_CONNECTION
from twoway.storage import Document
from twoway.topology import EVENTS_EXCHANGE, INBOUND_EXCHANGE, declare_exchanges
from twoway_ingress.app import create_app
from twoway_ingress.settings import IngressSettings

pytestmark = pytest.mark.rabbit

CAPTURE_QUEUE = "test.gateway-ingress.capture"
TOKEN = "twilio-auth-token"
SENDER = "+15558675310"

GATEWAYS = """
default_gateway: kannel
gateways:
  - id: kannel
    type: kannel
    url: http://127.0.0.1:1/cgi-bin/sendsms
    account: twoway
    secret: TEST_KANNEL_PASSWORD
    own_numbers: ["12345"]
    inbound: {token: TEST_KANNEL_TOKEN}
  - id: twilio
    type: twilio
    url: http://127.0.0.1:1
    account: ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX
    secret: TEST_TWILIO_TOKEN
    own_numbers: ["+15017122661"]
  - id: infobip
    type: infobip
    url: http://127.0.0.1:1
    secret: TEST_INFOBIP_KEY
    own_numbers: ["+385921004026"]
    inbound: {allow_from: [127.0.0.0/8]}
  - id: office
    type: webhook
    url: http://127.0.0.1:1/sms
    own_numbers: ["12345"]
    inbound: {allow_from: [192.0.2.0/24]}
  - id: vonage
    type: vonage
    url: http://127.0.0.1:1
    account: abcd1234
    secret: TEST_VONAGE_SECRET
    signature_secret: TEST_VONAGE_SIGNATURE_SECRET
    signature_method: sha256
    own_numbers: ["+447700900000"]
    inbound: {signature: true}
    inbound_limits: {per_sender: null}  # the tests post dozens of parts from one sender
"""


VONAGE_SIGNATURE_SECRET = "vonage-signature-secret"

LOOPBACK = "127.0.0.0/8"
"""Where the tests post from: listed in `trusted_proxies`, the tests play the proxy."""


@pytest.fixture
def trusted_proxies() -> list[str]:
    """TWOWAY_TRUSTED_PROXIES (a test parametrizes it to play a proxy)."""
    return []


@pytest.fixture
async def ingress(
    make_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trusted_proxies: list[str],
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    config = tmp_path / "gateways.yaml"
    config.write_text(GATEWAYS)
    for name, value in {
        "TEST_KANNEL_PASSWORD": "pw",
        "TEST_KANNEL_TOKEN": "k-token",
        "TEST_TWILIO_TOKEN": TOKEN,
        "TEST_INFOBIP_KEY": "key",
        "TEST_VONAGE_SECRET": "api-secret",
        "TEST_VONAGE_SIGNATURE_SECRET": VONAGE_SIGNATURE_SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    channel = await amqp.channel()
    await declare_exchanges(channel)
    queue = await channel.declare_queue(CAPTURE_QUEUE, exclusive=False, auto_delete=False)
    await queue.purge()
    await queue.bind(INBOUND_EXCHANGE, routing_key="#")
    await queue.bind(EVENTS_EXCHANGE, routing_key="#")
    settings = make_settings(IngressSettings, gateways_file=config, trusted_proxies=trusted_proxies)
    async with serving(create_app(settings)) as url, aiohttp.ClientSession() as http:
        yield url, http
    await queue.delete(if_unused=False, if_empty=False)
    await channel.close()


async def captured(amqp: AbstractRobustConnection, expect: int) -> list[Any]:
    messages = await drain(amqp, CAPTURE_QUEUE, expect=expect)
    return [json.loads(message.body) for message in messages]


async def test_kannel_post_url_is_queued_and_answered_empty(
    ingress: tuple[str, aiohttp.ClientSession], amqp: AbstractRobustConnection
) -> None:
    url, http = ingress
    async with http.post(
        f"{url}/gateways/kannel/inbound?token=k-token&smsc=smsc1&id=7c1e",
        data="BAL naïve".encode(),
        headers={
            "Content-Type": "text/plain; charset=UTF-8",
            "X-Kannel-From": SENDER,
            "X-Kannel-To": "12345",
        },
    ) as response:
        assert response.status == 200
        assert await response.read() == b""
    [document] = await captured(amqp, 1)
    message = InboundSMS.model_validate(document)
    assert (message.gateway_id, message.sender, message.text, message.keyword) == (
        "kannel",
        SENDER,
        "BAL naïve",
        "BAL",
    )
    assert message.params == {"smsc": "smsc1", "id": "7c1e"}  # the token is not kept


async def test_kannel_delivery_report_is_a_delivery_event(
    ingress: tuple[str, aiohttp.ClientSession], amqp: AbstractRobustConnection
) -> None:
    url, http = ingress
    reference = signed_reference("kannel", "01JDQ6", "bank")
    query = {"token": "k-token", "ref": reference, "type": "1", "smsc_id": "ab12"}
    async with http.get(f"{url}/gateways/kannel/status", params=query) as response:
        assert response.status == 200
    [document] = await captured(amqp, 1)
    event = DeliveryEvent.model_validate(document)
    assert (event.outbound_id, event.adapter, event.status, event.gateway_message_id) == (
        "01JDQ6",
        "bank",
        "delivered",
        "ab12",
    )


TWILIO_FORM = {"From": SENDER, "To": "+15017122661", "Body": "hello", "MessageSid": "SM1"}
PROXIED_TWILIO_HEADERS = {
    # Signed for the URL Twilio called: the proxy's, which it forwards to us.
    "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(
        "https://sms.example.com/gateways/twilio/inbound", TWILIO_FORM
    ),
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "sms.example.com",
}


@pytest.mark.parametrize("trusted_proxies", [[LOOPBACK]])
async def test_twilio_signed_post_behind_a_proxy(
    ingress: tuple[str, aiohttp.ClientSession], amqp: AbstractRobustConnection
) -> None:
    url, http = ingress
    form, headers = TWILIO_FORM, PROXIED_TWILIO_HEADERS
    async with http.post(f"{url}/gateways/twilio/inbound", data=form, headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "text/xml"
        assert "<Response></Response>" in await response.text()
    [document] = await captured(amqp, 1)
    assert InboundSMS.model_validate(document).gateway_message_id == "SM1"


FORWARDED: tuple[tuple[Any, ...], ...] = (
    (
        "twilio-signed-for-the-forwarded-url",
        "twilio/inbound",
        {"data": TWILIO_FORM, "headers": PROXIED_TWILIO_HEADERS},
    ),
    (
        "allow-listed-gateway",
        "office/inbound",
        {"json": {"from": SENDER, "text": "hi"}, "headers": {"X-Forwarded-For": "192.0.2.7"}},
    ),
)


@pytest.mark.parametrize(
    ("trusted_proxies", "status"),
    [([LOOPBACK], 200), ([], 403), (["10.0.0.0/8"], 403)],
    ids=["from-a-trusted-proxy", "no-proxy-trusted", "from-another-address"],
)
@pytest.mark.parametrize(
    ("path", "request_args"), [c[1:] for c in FORWARDED], ids=[c[0] for c in FORWARDED]
)
async def test_forwarded_headers_count_only_from_a_trusted_proxy(
    ingress: tuple[str, aiohttp.ClientSession],
    amqp: AbstractRobustConnection,
    path: str,
    request_args: dict[str, Any],
    status: int,
) -> None:
    """X-Forwarded-For (allow_from) and X-Forwarded-Proto/Host (the URL a signature covers) are
    believed from a peer in TWOWAY_TRUSTED_PROXIES only: from anyone else, a forgery."""
    url, http = ingress
    async with http.post(f"{url}/gateways/{path}", **request_args) as response:
        assert response.status == status
    assert await queue_length(amqp, CAPTURE_QUEUE) == (status == 200)


@pytest.mark.parametrize(
    ("trusted_proxies", "forwarded_for", "status"),
    [
        ([LOOPBACK], "192.0.2.7, 203.0.113.9", 403),
        ([LOOPBACK, "192.0.2.0/24"], "203.0.113.9, 192.0.2.7", 403),
        ([LOOPBACK, "192.0.2.0/24"], "192.0.2.7", 200),
    ],
    ids=["client-wrote-a-first-hop", "behind-two-proxies", "client-in-a-trusted-network"],
)
async def test_the_client_is_the_last_forwarded_hop_that_is_no_trusted_proxy(
    ingress: tuple[str, aiohttp.ClientSession], forwarded_for: str, status: int
) -> None:
    url, http = ingress
    headers = {"X-Forwarded-For": forwarded_for}
    body = {"from": SENDER, "text": "hi"}
    async with http.post(f"{url}/gateways/office/inbound", json=body, headers=headers) as response:
        assert response.status == status


REFUSED: tuple[tuple[Any, ...], ...] = (
    (
        "twilio-missing-signature",
        "twilio/inbound",
        {"data": {"From": SENDER, "Body": "secret words"}},
    ),
    (
        "twilio-bad-signature",
        "twilio/status",
        {
            "data": {"MessageStatus": "delivered", "Body": "secret words"},
            "headers": {"X-Twilio-Signature": "AAAA"},
        },
    ),
    ("kannel-wrong-token", "kannel/inbound?token=guess&from=%2B15558675310&text=secret+words", {}),
    (
        "webhook-not-from-allowed-network",
        "office/inbound",
        {"json": {"from": SENDER, "text": "secret words"}},
    ),
)


@pytest.mark.parametrize(
    ("path", "request_args"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
async def test_a_post_failing_authenticity_is_403_and_logged_without_its_body(
    ingress: tuple[str, aiohttp.ClientSession],
    amqp: AbstractRobustConnection,
    path: str,
    request_args: dict[str, Any],
) -> None:
    url, http = ingress
    with structlog.testing.capture_logs() as logs:
        async with http.post(f"{url}/gateways/{path}", **request_args) as response:
            assert response.status == 403
            assert (await response.json())["error"] == "forbidden"
    [refused] = [line for line in logs if line["event"] == "gateway_post_refused"]
    assert refused["reason"]
    assert "secret words" not in repr(logs)
    assert await queue_length(amqp, CAPTURE_QUEUE) == 0


async def test_unknown_gateway_is_404_json(ingress: tuple[str, aiohttp.ClientSession]) -> None:
    url, http = ingress
    for endpoint in ("inbound", "status"):
        async with http.post(f"{url}/gateways/nowhere/{endpoint}", data={"x": "1"}) as response:
            assert response.status == 404
            assert (await response.json())["error"] == "unknown_gateway"


async def test_infobip_batch_is_queued_whole(
    ingress: tuple[str, aiohttp.ClientSession], amqp: AbstractRobustConnection
) -> None:
    url, http = ingress
    results = [
        {"messageId": f"m{n}", "from": f"38591624249{n}", "to": "385921004026", "text": f"hi {n}"}
        for n in range(3)
    ]
    async with http.post(f"{url}/gateways/infobip/inbound", json={"results": results}) as response:
        assert response.status == 200
    documents = await captured(amqp, 3)
    assert sorted(doc["gateway_message_id"] for doc in documents) == ["m0", "m1", "m2"]


BAD_POSTS: tuple[tuple[Any, ...], ...] = (
    (
        "infobip-not-json",
        "infobip/inbound",
        {"data": b"{", "headers": {"Content-Type": "application/json"}},
        400,
    ),
    (
        "infobip-bad-sender",
        "infobip/inbound",
        {"json": {"results": [{"from": "x", "text": "hi"}]}},
        422,
    ),
    ("kannel-unknown-dlr-type", "kannel/status?token=k-token&ref=r&type=3", {}, 422),
    ("kannel-dlr-without-reference", "kannel/status?token=k-token&type=1", {}, 422),
    ("kannel-unsigned-reference", "kannel/status?token=k-token&ref=01JDQ6:bank&type=1", {}, 403),
    (
        "infobip-reference-for-another-gateway",
        "infobip/status",
        {
            "json": {
                "results": [
                    {
                        "messageId": "01JDQ6",
                        "status": {"groupName": "DELIVERED"},
                        "callbackData": signed_reference("kannel", "01JDQ6", "bank"),
                    }
                ]
            }
        },
        403,
    ),
    (
        "form-unknown-charset",
        "kannel/inbound?token=k-token",
        {
            "data": b"text=hi",
            "headers": {"Content-Type": "application/x-www-form-urlencoded; charset=bogus"},
        },
        400,
    ),
)


@pytest.mark.parametrize(
    ("path", "request_args", "status"), [c[1:] for c in BAD_POSTS], ids=[c[0] for c in BAD_POSTS]
)
async def test_a_post_we_cannot_understand_is_a_json_error(
    ingress: tuple[str, aiohttp.ClientSession],
    amqp: AbstractRobustConnection,
    path: str,
    request_args: dict[str, Any],
    status: int,
) -> None:
    url, http = ingress
    async with http.post(f"{url}/gateways/{path}", **request_args) as response:
        assert response.status == status
        assert (await response.json())["message"]
    assert await queue_length(amqp, CAPTURE_QUEUE) == 0


async def test_without_a_broker_a_gateway_post_is_503(
    make_settings: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    amqp: AbstractRobustConnection,
) -> None:
    config = tmp_path / "gateways.yaml"
    config.write_text(
        "default_gateway: g\ngateways:\n  - {id: g, type: webhook, url: 'http://127.0.0.1:1/',"
        " inbound: {open: true}}\n"
    )
    app = create_app(make_settings(IngressSettings, gateways_file=config))
    async with serving(app) as url, aiohttp.ClientSession() as http:
        await app[AMQP_CONNECTION].close()
        body = {"from": SENDER, "text": "hi"}
        async with http.post(f"{url}/gateways/g/inbound", json=body) as response:
            assert response.status == 503
            assert response.headers["Retry-After"]


# A long SMS from Vonage: each part posted on its own with `concat` fields, signed as Vonage signs
# (by Vonage's own SDK). Ingress stores the parts in MongoDB and queues the whole SMS once.

LONG_TEXT = ("BAL please tell me the ", "balance of account 1234", "5678 as of today")
"""Part 1's first word is the keyword; a word runs across parts 2 and 3."""
VONAGE_SENDER = "+447700900001"
PARTS_COLLECTION, CLAIMS_COLLECTION = "inbound_parts", "inbound_long_messages"


def vonage_part(number: int, reference: str = "08B5", **fields: str) -> dict[str, str]:
    """Part `number` of `LONG_TEXT` (3 parts) as Vonage posts it, signed."""
    text = LONG_TEXT[number - 1]
    post = {
        "msisdn": VONAGE_SENDER.removeprefix("+"),
        "to": "447700900000",
        "messageId": f"0A000000{reference}{number:02d}",
        "text": text,
        "type": "text",
        "keyword": text.split()[0].upper(),
        "message-timestamp": "2026-01-01 12:00:00",
        "timestamp": "1767268800",
        "nonce": f"nonce-{reference}-{number}",
        "concat": "true",
        "concat-ref": reference,
        "concat-total": str(len(LONG_TEXT)),
        "concat-part": str(number),
        **fields,
    }
    signer = Auth(
        api_key="abcd1234", signature_secret=VONAGE_SIGNATURE_SECRET, signature_method="sha256"
    )
    return {**post, "sig": signer.sign_params(dict(post))}


@dataclass(frozen=True)
class VonageIngress:
    """The ingress under test, with what the long-SMS tests look at: the broker and MongoDB."""

    url: str
    http: aiohttp.ClientSession
    amqp: AbstractRobustConnection
    db: AsyncDatabase[Document]

    async def post(
        self, fields: dict[str, str], how: str = "form", url: str | None = None
    ) -> tuple[int, Any]:
        """(status, JSON error or text answer) of a GET query, a form or a JSON object post."""
        endpoint = f"{url or self.url}/gateways/vonage/inbound"
        request = {
            "get": lambda: self.http.get(endpoint, params=fields),
            "form": lambda: self.http.post(endpoint, data=fields),
            "json": lambda: self.http.post(endpoint, json=fields),
        }[how]()
        async with request as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def queued(self) -> int:
        return await queue_length(self.amqp, CAPTURE_QUEUE)

    async def stored_parts(self) -> list[Document]:
        return await self.db[PARTS_COLLECTION].find().to_list()

    async def claim(self) -> Document:
        [claim] = await self.db[CLAIMS_COLLECTION].find().to_list()
        return claim


@pytest.fixture
def vonage(
    ingress: tuple[str, aiohttp.ClientSession],
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
) -> VonageIngress:
    url, http = ingress
    return VonageIngress(url, http, amqp, mongo_db)


ACCEPTED = (200, "")
"""Vonage's answer: an empty 200."""


@pytest.mark.mongo
async def test_a_long_vonage_sms_posted_out_of_order_is_queued_once_whole(
    vonage: VonageIngress,
) -> None:
    for number, how in ((3, "get"), (1, "json"), (2, "form")):
        assert await vonage.post(vonage_part(number), how) == ACCEPTED
    assert await vonage.queued() == 1
    [document] = await captured(vonage.amqp, 1)
    message = InboundSMS.model_validate(document)
    assert (message.gateway_id, message.sender, message.text, message.keyword) == (
        "vonage",
        VONAGE_SENDER,
        "".join(LONG_TEXT),
        "BAL",
    )
    assert message.gateway_message_id == "0A00000008B501"
    assert message.params["concat-ref"] == "08B5"
    claim = await vonage.claim()
    assert (claim["state"], claim["message"]["message_id"]) == ("published", message.message_id)


@pytest.mark.mongo
async def test_a_repeated_part_is_stored_once_and_the_sms_queued_once(
    vonage: VonageIngress,
) -> None:
    """A gateway retries a part it saw no answer to, before and after the SMS is complete."""
    for number in (1, 2, 2, 3, 3, 1):
        assert await vonage.post(vonage_part(number)) == ACCEPTED
    assert await vonage.queued() == 1
    assert len(await vonage.stored_parts()) == 3


@pytest.mark.mongo
async def test_last_parts_arriving_together_queue_the_sms_once(vonage: VonageIngress) -> None:
    """Parts 2 and 3 (and a retry of each) at once: every post may see the set complete."""
    references = [f"C{n}" for n in range(5)]
    for reference in references:
        assert await vonage.post(vonage_part(1, reference)) == ACCEPTED
    answers = await asyncio.gather(
        *(
            vonage.post(vonage_part(number, reference))
            for reference in references
            for number in (2, 3, 3, 2)
        )
    )
    assert answers == [ACCEPTED] * 4 * len(references)
    assert await vonage.queued() == len(references)
    documents = await captured(vonage.amqp, len(references))
    assert sorted(document["params"]["concat-ref"] for document in documents) == references
    assert {document["text"] for document in documents} == {"".join(LONG_TEXT)}


@pytest.mark.mongo
async def test_an_incomplete_long_sms_is_stored_to_expire_and_not_queued(
    vonage: VonageIngress,
) -> None:
    for number in (1, 3):
        assert await vonage.post(vonage_part(number)) == ACCEPTED
    assert await vonage.queued() == 0
    stored = await vonage.stored_parts()
    assert sorted(part["number"] for part in stored) == [1, 3]
    in_an_hour = utc_now() + timedelta(hours=1)
    assert all(abs(part["expires_at"] - in_an_hour) < timedelta(minutes=1) for part in stored)
    indexes = (await vonage.db[PARTS_COLLECTION].index_information()).values()
    ttl = [index["expireAfterSeconds"] for index in indexes if index["key"] == [("expires_at", 1)]]
    assert ttl == [0]
    assert await vonage.db[CLAIMS_COLLECTION].count_documents({}) == 0


MALFORMED_PARTS = (
    ("part-above-total", {"concat-part": "4"}, "concat-part", "invalid_field"),
    ("part-not-a-number", {"concat-part": "2nd"}, "concat-part", "invalid_field"),
    ("total-not-a-number", {"concat-total": "three"}, "concat-total", "invalid_field"),
    ("reference-missing", {"concat-ref": ""}, "concat-ref", "missing_field"),
)


@pytest.mark.mongo
@pytest.mark.parametrize(
    ("fields", "field", "code"),
    [c[1:] for c in MALFORMED_PARTS],
    ids=[c[0] for c in MALFORMED_PARTS],
)
async def test_a_malformed_part_is_a_json_error_naming_the_field(
    vonage: VonageIngress, fields: dict[str, str], field: str, code: str
) -> None:
    status, body = await vonage.post(vonage_part(1, **fields))
    assert (status, body["error"], body["field"]) == (422, code, field)
    assert field in body["message"]
    assert await vonage.queued() == 0
    assert await vonage.stored_parts() == []


@pytest.mark.mongo
async def test_a_part_whose_publish_failed_is_queued_later_with_the_same_message_id(
    vonage: VonageIngress, make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    """A replica without its broker stores parts (they need only the database), answers 503 to
    the last one and releases its claim; the gateway's retry, on another replica, queues the
    very message (same id) the first one had assembled."""
    broken = create_app(make_settings(IngressSettings, gateways_file=tmp_path / "gateways.yaml"))
    async with serving(broken) as broken_url:
        await broken[AMQP_CONNECTION].close()
        for number in (1, 2):
            assert await vonage.post(vonage_part(number), url=broken_url) == ACCEPTED
        status, body = await vonage.post(vonage_part(3), url=broken_url)
        assert (status, body["error"]) == (503, "broker_unavailable")
    claim = await vonage.claim()
    assert claim["state"] == "pending"
    assert await vonage.post(vonage_part(3)) == ACCEPTED
    [document] = await captured(vonage.amqp, 1)
    assert document["message_id"] == claim["message"]["message_id"]
    assert document["text"] == "".join(LONG_TEXT)


async def test_without_a_database_a_part_is_503_and_a_whole_sms_still_queued(
    vonage: VonageIngress, make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    settings = make_settings(
        IngressSettings, gateways_file=tmp_path / "gateways.yaml", mongo_url="mongodb://127.0.0.1:1"
    )
    async with serving(create_app(settings)) as url:
        endpoint = f"{url}/gateways/vonage/inbound"
        async with vonage.http.post(endpoint, data=vonage_part(1)) as response:
            assert response.status == 503
            assert response.headers["Retry-After"]
            assert (await response.json())["error"] == "database_unavailable"
        assert await vonage.post(vonage_part(1, concat="false"), url=url) == ACCEPTED
    [document] = await captured(vonage.amqp, 1)
    assert document["text"] == LONG_TEXT[0]
