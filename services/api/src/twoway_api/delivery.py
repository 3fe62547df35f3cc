"""What became of outbound messages: a message's status history (the message log) and outbound's
dead letters, listed and replayed.

`GET /messages/{message_id}` reads the message log the message-log worker writes from
`sms.events`, so a message `POST /messages` accepted shows its status here once its first event
is logged (404 until then, and after the log's retention).

`GET /dead-letters/{queue}` and `POST /dead-letters/{queue}/replay` work on outbound's
dead-letter queues only (`OUTBOUND_DEAD_LETTER_QUEUES`): replay publishes back to `sms.outbound`,
which is only right for outbound's messages. Each request uses a channel of its own: listing
holds the messages unacked until it puts them back, and a queue not declared yet (outbound never
ran) closes the channel, which then means "no dead letters". Without the broker (or when it does
not answer within `dead_letter_timeout`), both answer 503; a replay cut short that way has
replayed some, and the rest stay in the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import structlog
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import AMQPError, ChannelNotFoundEntity
from aiohttp import web
from pydantic import BaseModel, Field

from twoway.dead_letters import OUTBOUND_DEAD_LETTER_QUEUES, list_dead_letters, replay_dead_letters
from twoway.http_errors import InvalidRequest
from twoway.message_log import LOG_COLLECTION, MessageLog
from twoway.messages import DeliveryStatus, OutboundSMS
from twoway.service import AMQP_CONNECTION, MONGO_DB, PUBLISHER, CleanupContext
from twoway_api.operations import (
    ErrorBody,
    Operation,
    PathParameter,
    Response,
    json_model_response,
    parse_body,
    parse_query,
)
from twoway_api.schemas import Request
from twoway_api.settings import ApiSettings

log = structlog.get_logger(__name__)

MAX_DEAD_LETTERS = 1000
"""The most dead letters one request lists or replays (they are held in memory meanwhile)."""

MESSAGE_LOG = web.AppKey("message_log", MessageLog)
DEAD_LETTER_TIMEOUT = web.AppKey("dead_letter_timeout", float)


class StatusChange(BaseModel):
    status: DeliveryStatus
    at: datetime
    detail: str = ""
    gateway_message_id: str | None = None
    event_id: str | None = Field(default=None, description="The id of the event that told us")


class PendingAttempt(BaseModel):
    attempt: int = Field(description="Which attempt (1 is the first)")
    gateway_id: str
    at: datetime = Field(description="When outbound was about to send it")


class MessageStatus(BaseModel):
    message_id: str
    status: DeliveryStatus = Field(
        description="The latest status: the last of the history. `unknown`: an attempt is in "
        "doubt (see `attempt`), the history's `unknown` entry says why"
    )
    gateway_id: str | None
    adapter: str | None
    gateway_message_id: str | None
    history: list[StatusChange] = Field(description="In the order things happened")
    updated_at: datetime
    attempt: PendingAttempt | None = Field(
        default=None,
        description="An attempt with no logged outcome: being sent now or, with status "
        "`unknown`, in doubt (outbound stopped during it; a delivery report settles it)",
    )


class DeadLetterQuery(Request):
    limit: int = Field(default=100, ge=1, le=MAX_DEAD_LETTERS, description="At most this many")


class DeadLetter(BaseModel):
    queue: str
    message_id: str | None
    reason: str = Field(description="Why outbound gave up on it")
    message: OutboundSMS | None = Field(
        description="null: the body is not an outbound SMS (it can't be replayed)"
    )


class DeadLetterList(BaseModel):
    items: list[DeadLetter] = Field(description="Oldest first; they stay in the queue")


class ReplayRequest(Request):
    message_ids: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_DEAD_LETTERS,
        description="Replay these (absent or null: every dead letter of the queue)",
    )


class ReplayResult(BaseModel):
    queue: str
    replayed: int = Field(description="How many were published again and left the queue")


async def get_message(request: web.Request) -> web.Response:
    message_id = request.match_info["message_id"]
    record = await request.app[MESSAGE_LOG].get(message_id)
    if record is None:
        raise InvalidRequest(404, "not_found", f"no logged message {message_id}", "message_id")
    return json_model_response(MessageStatus.model_validate(dataclasses.asdict(record)))


def _queue(request: web.Request) -> str:
    queue = request.match_info["queue"]
    if queue not in OUTBOUND_DEAD_LETTER_QUEUES:
        raise InvalidRequest(
            404,
            "unknown_queue",
            f"not a dead-letter queue of ours; one of {', '.join(OUTBOUND_DEAD_LETTER_QUEUES)}",
            "queue",
        )
    return queue


def _broker_unavailable(message: str) -> InvalidRequest:
    return InvalidRequest(503, "broker_unavailable", message)


@asynccontextmanager
async def _channel(request: web.Request) -> AsyncIterator[AbstractChannel]:
    """A channel of the request's own, closed after it; 503 when the broker is unreachable or
    the block outlasts `dead_letter_timeout` (on a lost connection, calls wait for a reconnect)."""
    try:
        channel = await request.app[AMQP_CONNECTION].channel()
    except (RuntimeError, AMQPError, ConnectionError) as error:  # RuntimeError: closed connection
        log.error("api_broker_unreachable", error=repr(error))
        raise _broker_unavailable("the broker is unreachable; retry later") from error
    try:
        async with asyncio.timeout(request.app[DEAD_LETTER_TIMEOUT]):
            yield channel
    except (TimeoutError, AMQPError, ConnectionError) as error:
        log.error("api_broker_unreachable", error=repr(error))
        raise _broker_unavailable("the broker did not answer in time; retry later") from error
    finally:
        if not channel.is_closed:
            with contextlib.suppress(Exception):  # a lost connection's channel cannot say bye
                async with asyncio.timeout(1.0):
                    await channel.close()


async def list_queue(request: web.Request) -> web.Response:
    queue = _queue(request)
    query = parse_query(request, DeadLetterQuery)
    async with _channel(request) as channel:
        try:
            dead = await list_dead_letters(channel, queue, query.limit)
        except ChannelNotFoundEntity:
            dead = []
    items = [DeadLetter.model_validate(dataclasses.asdict(letter)) for letter in dead]
    return json_model_response(DeadLetterList(items=items))


async def replay_queue(request: web.Request) -> web.Response:
    queue = _queue(request)
    body = await parse_body(request, ReplayRequest) if request.body_exists else ReplayRequest()
    async with _channel(request) as channel:
        try:
            replayed = await replay_dead_letters(
                channel, request.app[PUBLISHER], queue, body.message_ids, MAX_DEAD_LETTERS
            )
        except ChannelNotFoundEntity:
            replayed = 0
    log.info("dead_letters_replayed", queue=queue, replayed=replayed)
    return json_model_response(ReplayResult(queue=queue, replayed=replayed))


def delivery_context(settings: ApiSettings) -> CleanupContext:
    """The message log over the api's database (after `mongo_context`)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        app[MESSAGE_LOG] = MessageLog(app[MONGO_DB][LOG_COLLECTION])
        app[DEAD_LETTER_TIMEOUT] = settings.dead_letter_timeout
        yield

    return context


_ERROR = Response("Refused; see the error body", ErrorBody)
_UNKNOWN_QUEUE = Response("Not one of outbound's dead-letter queues", ErrorBody)

DELIVERY_PATH_PARAMETERS = {
    "message_id": PathParameter("The id POST /messages answered (an outbound message's id)"),
    "queue": PathParameter(
        "One of outbound's dead-letter queues (another name: 404)",
        enum=OUTBOUND_DEAD_LETTER_QUEUES,
    ),
}

DELIVERY_OPERATIONS = [
    Operation(
        "GET",
        "/messages/{message_id}",
        get_message,
        operation_id="getMessage",
        summary="An outbound message's status and history, from the message log",
        tag="messages",
        responses={
            200: Response("The message's status", MessageStatus),
            404: Response("Nothing logged for this message (yet, or any more)", ErrorBody),
        },
    ),
    Operation(
        "GET",
        "/dead-letters/{queue}",
        list_queue,
        operation_id="listDeadLetters",
        summary="The messages outbound gave up on, with the reason; they stay in the queue",
        tag="dead letters",
        query=DeadLetterQuery,
        responses={
            200: Response("The oldest dead letters", DeadLetterList),
            404: _UNKNOWN_QUEUE,
            422: _ERROR,
            503: Response("The broker is unreachable", ErrorBody),
        },
    ),
    Operation(
        "POST",
        "/dead-letters/{queue}/replay",
        replay_queue,
        operation_id="replayDeadLetters",
        summary="Send dead letters again as fresh first attempts (all, or those named); "
        "each leaves the queue once the broker confirmed its replay",
        tag="dead letters",
        body=ReplayRequest,
        body_required=False,
        responses={
            200: Response("How many were replayed", ReplayResult),
            400: _ERROR,
            404: _UNKNOWN_QUEUE,
            415: _ERROR,
            422: _ERROR,
            503: Response("The broker is unreachable; the rest stay in the queue", ErrorBody),
        },
    ),
]
