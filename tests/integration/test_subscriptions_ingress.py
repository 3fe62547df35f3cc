"""`GET /subscribeSMS` on ingress (MobileFirst's servlet) against real RabbitMQ and MongoDB: off by
default, behind a gateway's inbound checks in gateway mode, double opt-in in public mode."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aio_pika.abc import AbstractQueue, AbstractRobustConnection
from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from tests.integration.test_api import broker_url_through
from tests.support.proxy import database_proxy
from tests.support.servers import serving
from tests.support.stack import SHORT_CODE
from tests.support.waiting import until
from twoway.messages import EventSource, OutboundSMS, SubscriptionChanged, utc_now
from twoway.service import AMQP_CONNECTION, PUBLISHER
from twoway.storage import Document
from twoway.subscriptions import EventSourceRegistry, SubscriptionStore
from twoway.topology import OUTBOUND_EXCHANGE, SUBSCRIPTIONS_EXCHANGE, outbound_key
from twoway_devstack import ServerUrls
from twoway_ingress.app import create_app
from twoway_ingress.confirmations import CONFIRMATIONS
from twoway_ingress.settings import IngressSettings

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

NEWS = "bank.News"
PHONE = "+15551234567"
TOKEN_VARIABLE = "TWOWAY_TEST_SUBSCRIBE_TOKEN"
TOKEN = "s3cret-subscribe-token"
GATEWAY_MODE = {"subscribe_mode": "gateway", "subscribe_gateway": "sim"}


def gateways_file(directory: Path) -> Path:
    """Gateway `sim`, whose inbound posts (and so /subscribeSMS in gateway mode) need a token."""
    path = directory / "gateways.yaml"
    path.write_text(
        "default_gateway: sim\n"
        "gateways:\n"
        "  - id: sim\n"
        "    type: mobilefirst-http\n"
        "    url: http://127.0.0.1:9/sendSMS\n"
        f"    default_sender: '{SHORT_CODE}'\n"
        f"    inbound: {{token: {TOKEN_VARIABLE}}}\n"
    )
    return path


@dataclass(frozen=True)
class Ingress:
    url: str
    http: aiohttp.ClientSession
    store: SubscriptionStore
    app: web.Application
    credentials: str = ""
    """Appended to every query: the gateway's token in gateway mode."""

    async def answer(
        self, query: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any], Mapping[str, str]]:
        url = f"{self.url}/subscribeSMS?{query}{self.credentials}"
        async with self.http.get(url, headers=headers) as response:
            assert response.content_type == "application/json"
            return response.status, await response.json(), response.headers

    async def get(self, query: str) -> tuple[int, dict[str, Any]]:
        status, body, _headers = await self.answer(query)
        return status, body


StartIngress = Callable[..., Awaitable[Ingress]]


@pytest.fixture
async def start_ingress(
    make_settings: Callable[..., Any],
    mongo_db: AsyncDatabase[Document],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[StartIngress]:
    """Start ingress with these settings (`credentials`: what every query carries)."""
    monkeypatch.setenv(TOKEN_VARIABLE, TOKEN)
    await EventSourceRegistry(mongo_db).replace_adapter_sources(
        "bank", [EventSource(name=NEWS, adapter="bank")]
    )
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())

        async def start(credentials: str = "", **overrides: Any) -> Ingress:
            settings = make_settings(
                IngressSettings, gateways_file=gateways_file(tmp_path), **overrides
            )
            app = create_app(settings)
            url = await stack.enter_async_context(serving(app))
            return Ingress(url, http, SubscriptionStore(mongo_db, "US"), app, credentials)

        yield start


@pytest.fixture
async def ingress(start_ingress: StartIngress, amqp: AbstractRobustConnection) -> Ingress:
    """Ingress in gateway mode, every request carrying the gateway's token."""
    return await start_ingress(f"&token={TOKEN}", **GATEWAY_MODE)


SUBSCRIBE = f"eventSource={NEWS}&phoneNumber=%2B15551234567"


@pytest.mark.parametrize(
    ("query", "phone"),
    [
        pytest.param(SUBSCRIBE, PHONE, id="no-option"),
        pytest.param(f"{SUBSCRIBE}&option=", PHONE, id="blank-option"),
        pytest.param(f"{SUBSCRIBE}&option=%20%20", PHONE, id="whitespace-option"),
        pytest.param(f"eventSource={NEWS}&phoneNumber=555-123-4567", PHONE, id="national-dashes"),
        pytest.param(
            f"eventSource={NEWS}&phoneNumber=+447911123456", "+447911123456", id="raw-plus"
        ),
        pytest.param(
            f"eventSource={NEWS}&phoneNumber=%2B44%207911%20123456",
            "+447911123456",
            id="spaces",
        ),
    ],
)
async def test_subscribe_stores_the_number_in_e164(
    ingress: Ingress, query: str, phone: str
) -> None:
    status, body = await ingress.get(query)
    assert (status, body) == (
        200,
        {"status": "subscribed", "eventSource": NEWS, "phoneNumber": phone},
    )
    assert await ingress.store.get_subscription(NEWS, phone) is not None


async def test_subscribing_again_is_harmless_keeps_details_and_answers_the_same(
    ingress: Ingress,
) -> None:
    first = await ingress.get(f"{SUBSCRIBE}&userName=ann&alias=Ann%20S")
    again = await ingress.get(SUBSCRIBE)

    assert (
        first
        == again
        == (
            200,
            {"status": "subscribed", "eventSource": NEWS, "phoneNumber": PHONE},
        )
    )
    subscription = await ingress.store.get_subscription(NEWS, PHONE)
    assert subscription is not None
    assert (subscription.user_id, subscription.alias) == ("ann", "Ann S")


@pytest.mark.parametrize("option", ["unsubscribe", "0", "false", "x"])
async def test_any_other_option_unsubscribes_and_answers_the_same_twice(
    ingress: Ingress, option: str
) -> None:
    await ingress.get(SUBSCRIBE)

    unsubscribed = (200, {"status": "unsubscribed", "eventSource": NEWS, "phoneNumber": PHONE})
    assert await ingress.get(f"{SUBSCRIBE}&option={option}") == unsubscribed
    assert await ingress.get(f"{SUBSCRIBE}&option={option}") == unsubscribed
    assert await ingress.store.get_subscription(NEWS, PHONE) is None


@pytest.mark.parametrize(
    ("query", "status", "code", "field"),
    [
        pytest.param("phoneNumber=5551234567", 422, "missing_field", "eventSource", id="no-source"),
        pytest.param(
            "eventSource=%20&phoneNumber=5551234567",
            422,
            "missing_field",
            "eventSource",
            id="blank-source",
        ),
        pytest.param(f"eventSource={NEWS}", 422, "missing_field", "phoneNumber", id="no-phone"),
        pytest.param(
            f"eventSource={NEWS}&phoneNumber=", 422, "missing_field", "phoneNumber", id="blank"
        ),
        pytest.param(
            f"eventSource={NEWS}&phoneNumber=555CALLNOW",
            422,
            "invalid_field",
            "phoneNumber",
            id="letters",
        ),
        pytest.param(
            f"eventSource={NEWS}&phoneNumber=(555)%20123-4567",
            422,
            "invalid_field",
            "phoneNumber",
            id="parentheses",
        ),
        pytest.param(
            f"eventSource={NEWS}&phoneNumber=123", 422, "invalid_field", "phoneNumber", id="short"
        ),
        pytest.param(
            "eventSource=bank.Unknown&phoneNumber=5551234567",
            404,
            "unknown_event_source",
            "eventSource",
            id="undeclared-source",
        ),
        pytest.param(
            "eventSource=News&phoneNumber=5551234567",
            422,
            "invalid_field",
            "eventSource",
            id="not-adapter-dot-source",
        ),
    ],
)
async def test_bad_requests_get_a_clear_4xx_and_store_nothing(
    ingress: Ingress,
    mongo_db: AsyncDatabase[Document],
    query: str,
    status: int,
    code: str,
    field: str,
) -> None:
    got, body = await ingress.get(query)
    assert (got, body["error"], body["field"]) == (status, code, field)
    assert body["message"]
    assert await mongo_db["subscriptions"].count_documents({}) == 0


async def test_post_is_not_the_servlet(ingress: Ingress) -> None:
    async with ingress.http.post(f"{ingress.url}/subscribeSMS?{SUBSCRIBE}") as response:
        assert response.status == 405
        assert (await response.json())["error"] == "method_not_allowed"


async def test_each_change_is_announced_to_the_sources_adapter(
    ingress: Ingress, amqp: AbstractRobustConnection
) -> None:
    channel = await amqp.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(SUBSCRIPTIONS_EXCHANGE, routing_key="bank")

    await ingress.get(SUBSCRIBE)
    await ingress.get(SUBSCRIBE)  # no change: no event
    await ingress.get(f"{SUBSCRIBE}&option=stop")

    changes = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        event = SubscriptionChanged.model_validate_json(message.body)
        changes.append((event.change, event.subscription.phone))
    await channel.close()
    assert changes == [("subscribed", PHONE), ("unsubscribed", PHONE)]


async def test_without_the_broker_it_is_503_and_nothing_changes(ingress: Ingress) -> None:
    await ingress.get(SUBSCRIBE)
    subscribed = await ingress.store.get_subscription(NEWS, PHONE)
    await ingress.app[AMQP_CONNECTION].close()

    for query in (f"eventSource={NEWS}&phoneNumber=5557654321", f"{SUBSCRIBE}&option=stop"):
        status, body = await ingress.get(query)
        assert (status, body["error"]) == (503, "unavailable")
    assert await ingress.store.get_subscription(NEWS, "+15557654321") is None
    assert await ingress.store.get_subscription(NEWS, PHONE) == subscribed


async def test_when_the_broker_goes_away_it_is_503_and_nothing_changes(
    make_settings: Callable[..., Any],
    servers: ServerUrls,
    mongo_db: AsyncDatabase[Document],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_VARIABLE, TOKEN)
    await EventSourceRegistry(mongo_db).replace_adapter_sources(
        "bank", [EventSource(name=NEWS, adapter="bank")]
    )
    store = SubscriptionStore(mongo_db, "US")
    subscribed, _ = await store.subscribe(NEWS, PHONE)
    async with database_proxy(servers.amqp_url) as proxy:
        settings = make_settings(
            IngressSettings,
            gateways_file=gateways_file(tmp_path),
            amqp_url=broker_url_through(proxy, servers.amqp_url),
            publish_timeout=1.0,
            **GATEWAY_MODE,
        )
        app = create_app(settings)
        async with serving(app) as url, aiohttp.ClientSession() as http:
            ingress = Ingress(url, http, store, app, f"&token={TOKEN}")
            proxy.cut()  # the connection drops; reconnecting is refused
            await until(lambda: app[PUBLISHER].channel.is_closed)
            for query in (f"eventSource={NEWS}&phoneNumber=5557654321", f"{SUBSCRIBE}&option=stop"):
                status, body = await ingress.get(query)
                assert (status, body["error"]) == (503, "unavailable")
                assert body["message"]
    assert await store.get_subscription(NEWS, "+15557654321") is None
    assert await store.get_subscription(NEWS, PHONE) == subscribed


@pytest.mark.parametrize(
    "overrides", [pytest.param(GATEWAY_MODE, id="gateway"), pytest.param({}, id="public")]
)
async def test_receive_sms_stays_ready_without_the_database(
    start_ingress: StartIngress, amqp: AbstractRobustConnection, overrides: dict[str, str]
) -> None:
    ingress = await start_ingress(
        f"&token={TOKEN}",
        mongo_url="mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200",
        **{"subscribe_mode": "public", **overrides},
    )
    async with ingress.http.get(f"{ingress.url}/readyz") as response:
        assert response.status == 200
    status, body, headers = await ingress.answer(SUBSCRIBE)
    assert (status, body["error"], headers["Retry-After"]) == (503, "unavailable", "5")


async def test_off_by_default_it_refuses_every_request_and_changes_nothing(
    start_ingress: StartIngress, amqp: AbstractRobustConnection, mongo_db: AsyncDatabase[Document]
) -> None:
    ingress = await start_ingress(f"&token={TOKEN}")
    for query in (SUBSCRIBE, f"{SUBSCRIBE}&option=stop", "eventSource=x"):
        status, body = await ingress.get(query)
        assert (status, body["error"]) == (404, "not_enabled")
    assert await mongo_db["subscriptions"].count_documents({}) == 0


@pytest.mark.parametrize(
    ("credentials", "headers", "allowed"),
    [
        pytest.param(f"&token={TOKEN}", {}, True, id="token-in-query"),
        pytest.param("", {"X-Twoway-Token": TOKEN}, True, id="token-in-header"),
        pytest.param("&token=guess", {}, False, id="wrong-token"),
        pytest.param("", {"X-Twoway-Token": "guess"}, False, id="wrong-header"),
        pytest.param("", {}, False, id="no-token"),
    ],
)
async def test_gateway_mode_takes_the_gateways_inbound_checks(
    start_ingress: StartIngress,
    amqp: AbstractRobustConnection,
    credentials: str,
    headers: dict[str, str],
    allowed: bool,
) -> None:
    ingress = await start_ingress(credentials, **GATEWAY_MODE)
    status, body, _headers = await ingress.answer(SUBSCRIBE, headers)
    subscription = await ingress.store.get_subscription(NEWS, PHONE)
    if allowed:
        assert (status, body["status"]) == (200, "subscribed")
        assert subscription is not None
    else:
        assert (status, body["error"]) == (403, "forbidden")
        assert subscription is None


# Public mode: each change waits for the code texted to the number.


@pytest.fixture
async def texts(amqp: AbstractRobustConnection) -> AsyncIterator[AbstractQueue]:
    """What ingress sends to outbound (as outbound's queue would get it)."""
    channel = await amqp.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(OUTBOUND_EXCHANGE, routing_key=outbound_key(None))
    yield queue
    await channel.close()


async def sent(texts: AbstractQueue) -> list[OutboundSMS]:
    """The SMS sent so far (every one was confirmed by the broker before ingress answered)."""
    messages = []
    while (message := await texts.get(no_ack=True, fail=False)) is not None:
        messages.append(OutboundSMS.model_validate_json(message.body))
    return messages


async def code_sent(texts: AbstractQueue, phone: str = PHONE) -> str:
    [sms] = await sent(texts)
    assert sms.to == phone
    match = re.fullmatch(r"Your code to (?:join|leave) bank\.News: (\d{6})", sms.text)
    assert match is not None, sms.text
    return match.group(1)


@pytest.fixture
async def public(start_ingress: StartIngress, texts: AbstractQueue) -> Ingress:
    return await start_ingress(subscribe_mode="public", subscribe_code_attempts=3)


CONFIRMATION_SENT = (
    202,
    {"status": "confirmation_sent", "eventSource": NEWS, "phoneNumber": PHONE},
)


async def test_public_mode_subscribes_once_the_texted_code_comes_back(
    public: Ingress, texts: AbstractQueue, mongo_db: AsyncDatabase[Document]
) -> None:
    assert await public.get(f"{SUBSCRIBE}&userName=ann&alias=Ann") == CONFIRMATION_SENT
    indexes = await mongo_db[CONFIRMATIONS].index_information()
    assert {"expireAfterSeconds": 0, "key": [("expires_at", 1)]}.items() <= next(
        index for name, index in indexes.items() if name != "_id_"
    ).items()
    [sms] = await sent(texts)
    assert (sms.to, sms.priority, sms.gateway_id) == (PHONE, "reply", None)
    assert sms.text.startswith("Your code to join bank.News: ")
    assert sms.not_after is not None
    assert await public.store.get_subscription(NEWS, PHONE) is None

    code = sms.text.rsplit(" ", 1)[1]
    assert await public.get(f"{SUBSCRIBE}&code={code}") == (
        200,
        {"status": "confirmed", "eventSource": NEWS, "phoneNumber": PHONE, "subscribed": True},
    )
    subscription = await public.store.get_subscription(NEWS, PHONE)
    assert subscription is not None
    assert (subscription.user_id, subscription.alias) == ("ann", "Ann")


async def test_public_mode_unsubscribes_once_the_texted_code_comes_back(
    public: Ingress, texts: AbstractQueue
) -> None:
    await public.store.subscribe(NEWS, PHONE)
    leave = f"{SUBSCRIBE}&option=stop"
    assert await public.get(leave) == CONFIRMATION_SENT
    code = await code_sent(texts)

    status, body = await public.get(f"{leave}&code={code}")
    assert (status, body["status"], body["subscribed"]) == (200, "confirmed", False)
    assert await public.store.get_subscription(NEWS, PHONE) is None


@pytest.mark.parametrize(
    "option", [pytest.param("", id="subscribe"), pytest.param("&option=stop", id="unsubscribe")]
)
async def test_answers_are_the_same_whether_or_not_the_number_was_subscribed(
    public: Ingress, texts: AbstractQueue, option: str
) -> None:
    other = "+15557654321"
    await public.store.subscribe(NEWS, PHONE)
    answers = []
    for number in (PHONE, other):
        query = f"eventSource={NEWS}&phoneNumber={number.replace('+', '%2B')}{option}"
        requested = await public.get(query)
        code = await code_sent(texts, number)
        confirmed = await public.get(f"{query}&code={code}")
        answers.append((requested, confirmed))
    first, second = (repr(answer).replace(other, PHONE) for answer in answers)
    assert first == second


async def test_a_wrong_code_is_refused_and_the_right_one_still_works(
    public: Ingress, texts: AbstractQueue
) -> None:
    await public.get(SUBSCRIBE)
    code = await code_sent(texts)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    status, body = await public.get(f"{SUBSCRIBE}&code={wrong}")
    assert (status, body["error"], body["field"]) == (422, "invalid_code", "code")
    assert await public.store.get_subscription(NEWS, PHONE) is None
    assert (await public.get(f"{SUBSCRIBE}&code={code}"))[0] == 200


@pytest.mark.parametrize(
    "other",
    [
        pytest.param("&option=stop", id="for-unsubscribing"),
        pytest.param("", id="for-another-source"),
    ],
)
async def test_a_code_confirms_only_the_change_it_was_sent_for(
    public: Ingress, texts: AbstractQueue, mongo_db: AsyncDatabase[Document], other: str
) -> None:
    await EventSourceRegistry(mongo_db).replace_adapter_sources(
        "bank",
        [EventSource(name=NEWS, adapter="bank"), EventSource(name="bank.Alerts", adapter="bank")],
    )
    await public.get(SUBSCRIBE)
    code = await code_sent(texts)
    query = f"{SUBSCRIBE}{other}" if other else SUBSCRIBE.replace(NEWS, "bank.Alerts")

    status, body = await public.get(f"{query}&code={code}")
    assert (status, body["error"]) == (422, "invalid_code")


async def test_a_code_works_once(public: Ingress, texts: AbstractQueue) -> None:
    await public.get(SUBSCRIBE)
    code = await code_sent(texts)
    assert (await public.get(f"{SUBSCRIBE}&code={code}"))[0] == 200

    status, body = await public.get(f"{SUBSCRIBE}&code={code}")
    assert (status, body["error"]) == (422, "invalid_code")


async def test_without_a_code_request_any_code_is_refused(public: Ingress) -> None:
    status, body = await public.get(f"{SUBSCRIBE}&code=123456")
    assert (status, body["error"]) == (422, "invalid_code")
    assert await public.store.get_subscription(NEWS, PHONE) is None


async def test_an_expired_code_is_refused(
    public: Ingress, texts: AbstractQueue, mongo_db: AsyncDatabase[Document]
) -> None:
    await public.get(SUBSCRIBE)
    code = await code_sent(texts)
    ttl = timedelta(seconds=IngressSettings.model_fields["subscribe_code_ttl_seconds"].default)
    [pending] = await mongo_db[CONFIRMATIONS].find().to_list()
    await mongo_db[CONFIRMATIONS].update_one(
        {"_id": PHONE}, {"$set": {"sent_at": pending["sent_at"] - ttl}}
    )

    status, body = await public.get(f"{SUBSCRIBE}&code={code}")
    assert (status, body["error"]) == (422, "invalid_code")
    assert await public.store.get_subscription(NEWS, PHONE) is None


async def test_after_its_last_attempt_not_even_the_right_code_works(
    public: Ingress, texts: AbstractQueue
) -> None:
    await public.get(SUBSCRIBE)
    code = await code_sent(texts)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _attempt in range(3):  # subscribe_code_attempts
        assert (await public.get(f"{SUBSCRIBE}&code={wrong}"))[0] == 422

    status, body = await public.get(f"{SUBSCRIBE}&code={code}")
    assert (status, body["error"]) == (429, "too_many_attempts")
    assert await public.store.get_subscription(NEWS, PHONE) is None


async def test_a_number_is_sent_one_code_per_interval(
    public: Ingress, texts: AbstractQueue, mongo_db: AsyncDatabase[Document]
) -> None:
    assert await public.get(SUBSCRIBE) == CONFIRMATION_SENT
    first = await code_sent(texts)

    for query in (SUBSCRIBE, f"{SUBSCRIBE}&option=stop", SUBSCRIBE.replace("%2B1", "")):
        status, body, headers = await public.answer(query)
        assert (status, body["error"], body["field"]) == (429, "too_soon", "phoneNumber")
        assert 1 <= int(headers["Retry-After"]) <= 60
    assert await sent(texts) == []

    await mongo_db[CONFIRMATIONS].update_one(  # the interval passes
        {"_id": PHONE}, {"$set": {"sent_at": utc_now() - timedelta(seconds=60)}}
    )
    assert await public.get(SUBSCRIBE) == CONFIRMATION_SENT
    second = await code_sent(texts)
    if second != first:  # the new code replaced the old one
        assert (await public.get(f"{SUBSCRIBE}&code={first}"))[0] == 422
    assert (await public.get(f"{SUBSCRIBE}&code={second}"))[0] == 200


async def test_a_confirmed_number_still_waits_for_its_next_code(
    public: Ingress, texts: AbstractQueue
) -> None:
    await public.get(SUBSCRIBE)
    await public.get(f"{SUBSCRIBE}&code={await code_sent(texts)}")

    status, body = await public.get(f"{SUBSCRIBE}&option=stop")
    assert (status, body["error"]) == (429, "too_soon")


async def test_an_undeclared_source_gets_no_code(public: Ingress, texts: AbstractQueue) -> None:
    status, body = await public.get(SUBSCRIBE.replace(NEWS, "bank.Unknown"))
    assert (status, body["error"]) == (404, "unknown_event_source")
    assert await sent(texts) == []


async def test_a_code_that_cannot_be_sent_is_withdrawn(
    public: Ingress, mongo_db: AsyncDatabase[Document]
) -> None:
    await public.app[AMQP_CONNECTION].close()

    status, body, headers = await public.answer(SUBSCRIBE)
    assert (status, body["error"], headers["Retry-After"]) == (503, "unavailable", "5")
    assert await mongo_db[CONFIRMATIONS].count_documents({}) == 0  # no wait for the next try
