"""Conversations: a handler asks a question, and the next SMS from that number is the answer.

Like a RapidPro flow, beyond MobileFirst. A handler calls

    await context.ask("What is your account number?", next="account", state={"step": 1})

which opens a conversation for the sender on the number they texted, then replies with the
question. Until the conversation expires (`conversation_ttl` seconds, or `ask(..., ttl=)`), the
router sends that number's next SMS to the adapter's `next` handler whatever its text, ahead of
every keyword handler (opt-out and HELP still come first), and the handler finds the state in
`context.conversation.state`. The answered conversation closes when that handler returns, unless
the handler asked another question, which replaces it; it also closes when the handler gives up
(see `twoway.handler_policy`).

There is at most one open conversation per sender and recipient (short code): a new question,
from any adapter, replaces the last one, as a new flow interrupts the old one in RapidPro.

Storage: MongoDB collection `conversations`, one document per (sender, recipient) with that pair
as its `_id`, so the router's per-message lookup is an indexed read on the primary key; the
lookups of the SMS a router handles at once go to the database as one `$in` query (see
`benchmarks/conversations.py` for what that saves). A TTL index on `expires_at` deletes expired
ones; MongoDB's TTL monitor runs about once a minute, so every read also checks `expires_at`.
The router passes the answered conversation's `question_id` to the adapter in a header, so the
adapter reads, and later closes, exactly the conversation the router saw, never a newer one.
"""

from __future__ import annotations

import time
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from twoway import metrics
from twoway.batching import GroupCommit
from twoway.broker import Publisher, repeat_headers
from twoway.consumed import Delivery
from twoway.messages import InboundSMS, utc_now
from twoway.settings import TwowaySettings
from twoway.storage import Document
from twoway.topology import ADAPTERS_EXCHANGE, HEADER_CONVERSATION, HEADER_HANDLER

log = structlog.get_logger(__name__)

CONVERSATIONS = "conversations"


class ConversationSettings(TwowaySettings):
    conversation_ttl: float = Field(
        default=900.0, gt=0, description="Seconds a question waits for its answer, by default"
    )


def conversation_key(sender: str, recipient: str) -> str:
    """The id of the conversation between `sender` and the short code or number `recipient`."""
    return f"{sender}|{recipient}"


class Conversation(BaseModel):
    """An open question: the next SMS from `sender` to `recipient` goes to `adapter`/`handler`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sender: str
    recipient: str
    adapter: str
    handler: str
    question_id: str = Field(description="The message id of the question; a version stamp")
    state: dict[str, JsonValue] = Field(
        default_factory=dict, description="JSON values the handlers keep between questions"
    )
    turn: int = Field(default=1, ge=1, description="Questions asked so far in this conversation")
    started_at: AwareDatetime = Field(default_factory=utc_now)
    expires_at: AwareDatetime

    @property
    def key(self) -> str:
        return conversation_key(self.sender, self.recipient)

    def routing_headers(self) -> dict[str, str]:
        """The headers with which the router hands an answer to the adapter."""
        return {HEADER_HANDLER: self.handler, HEADER_CONVERSATION: self.question_id}


@dataclass(frozen=True)
class ConversationRef:
    """One version of a conversation: its key and the question that was open."""

    key: str
    question_id: str

    def query(self) -> Document:
        return {"_id": self.key, "question_id": self.question_id}


def answered_conversation(message: InboundSMS, delivery: Delivery) -> ConversationRef | None:
    """The conversation `message` answers, when the router routed it as an answer."""
    if delivery.conversation is None:
        return None
    return ConversationRef(
        conversation_key(message.sender, message.recipient), delivery.conversation
    )


def _from_document(document: Document) -> Conversation:
    return Conversation.model_validate({k: v for k, v in document.items() if k != "_id"})


class ConversationStore:
    """Conversations in MongoDB; used by adapters (open, read, close) and routers (lookup)."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._collection = db[CONVERSATIONS]
        self._lookups: GroupCommit[str, Conversation | None] = GroupCommit(self._find_open)

    async def ensure_indexes(self) -> None:
        await self._collection.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0)

    async def open(self, conversation: Conversation) -> None:
        """Open `conversation`, replacing any other for the same sender and recipient."""
        document = {"_id": conversation.key, **conversation.model_dump()}
        await self._collection.replace_one({"_id": conversation.key}, document, upsert=True)

    async def find_open(self, sender: str, recipient: str) -> Conversation | None:
        """The unexpired conversation of `sender` with `recipient`, if any (the router's lookup).

        Concurrent lookups are batched into one `$in` query on `_id` (`twoway.batching`): one
        query per SMS would cap the router at the database's query rate."""
        return await self._lookups.submit(conversation_key(sender, recipient))

    async def _find_open(self, keys: Sequence[str]) -> list[Conversation | None]:
        cursor = self._collection.find(
            {"_id": {"$in": list(set(keys))}, "expires_at": {"$gt": utc_now()}}
        )
        found = {document["_id"]: _from_document(document) async for document in cursor}
        return [found.get(key) for key in keys]

    async def get(self, ref: ConversationRef) -> Conversation | None:
        """The conversation the router routed an answer to, unless it was replaced or removed."""
        document = await self._collection.find_one(ref.query())
        return None if document is None else _from_document(document)

    async def close(self, ref: ConversationRef) -> bool:
        """Close the conversation, unless a newer question replaced it; whether one closed."""
        result = await self._collection.delete_one(ref.query())
        return result.deleted_count == 1


async def route_answer(
    store: ConversationStore,
    publisher: Publisher,
    message: InboundSMS,
    delivery: Delivery,
) -> bool:
    """The router's step: send `message` to the adapter whose question it answers, if one is
    open for its sender and recipient; False (nothing sent) when none is."""
    started = time.perf_counter()
    conversation = await store.find_open(message.sender, message.recipient)
    metrics.CONVERSATION_LOOKUP_SECONDS.observe(time.perf_counter() - started)
    if conversation is None:
        return False
    await publisher.forward(
        delivery,
        exchange=ADAPTERS_EXCHANGE,
        routing_key=conversation.adapter,
        headers={**conversation.routing_headers(), **repeat_headers(delivery.may_repeat)},
    )
    metrics.CONVERSATION_ANSWERS.labels(adapter=conversation.adapter).inc()
    log.info(
        "sms_routed_as_answer",
        adapter=conversation.adapter,
        handler=conversation.handler,
        turn=conversation.turn,
    )
    return True


class UnknownStep(ValueError):
    """`ask(next=...)` named a handler the adapter does not have."""


class AdapterConversations:
    """One adapter's side of conversations: ask, read the one being answered, close it."""

    def __init__(
        self,
        store: ConversationStore,
        adapter: str,
        handlers: Container[str],
        settings: ConversationSettings,
    ) -> None:
        self._store = store
        self._adapter = adapter
        self._handlers = handlers
        self._default_ttl = settings.conversation_ttl

    async def ask(
        self,
        message: InboundSMS,
        *,
        question_id: str,
        next_handler: str,
        state: Mapping[str, JsonValue] | None,
        ttl: float | None,
        answering: Conversation | None,
    ) -> Conversation:
        """Open the conversation whose next answer goes to `next_handler`."""
        if next_handler not in self._handlers:
            raise UnknownStep(f"adapter {self._adapter!r} has no handler {next_handler!r}")
        now = utc_now()
        conversation = Conversation(
            sender=message.sender,
            recipient=message.recipient,
            adapter=self._adapter,
            handler=next_handler,
            question_id=question_id,
            state=dict(state or {}),
            turn=answering.turn + 1 if answering else 1,
            started_at=answering.started_at if answering else now,
            expires_at=now + timedelta(seconds=ttl or self._default_ttl),
        )
        await self._store.open(conversation)
        return conversation

    async def load(self, answered: ConversationRef) -> Conversation | None:
        return await self._store.get(answered)

    async def close(self, answered: ConversationRef) -> None:
        await self._store.close(answered)
