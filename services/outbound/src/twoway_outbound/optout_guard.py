"""Outbound's opt-out check: nothing is sent to a number that opted out of the sending short code.

Every outbound SMS is checked, before any gateway is called, against an in-memory index of the
opt-out list (`twoway.optouts.OptOutIndex`): loaded at start, updated for one number whenever
the router announces a change on `sms.control` (`OptOutChanged`), and reloaded whole every
`optout_refresh_seconds`. A message to a number that never opted out therefore costs a dictionary
look-up, not a database round trip. A message the index may refuse is decided on that number's
opt-outs read afresh from MongoDB (with their exemptions), so a stale index can never refuse a
number that opted back in, or the router's confirmation: refusals, which are rare, pay for their
own correctness. A refused message gets a `failed` event with detail `opted_out` and is
acked: it is not dead-lettered, because sending it again could never succeed.

The short code a message is sent from is its `from`, else its gateway's default sender; when
neither is known, any opt-out of the number blocks it.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from twoway import metrics
from twoway.broker import Handle
from twoway.consumed import Delivery
from twoway.control import control_context
from twoway.gateways.config import GatewaysConfig
from twoway.message_log import LOG_COLLECTION, EventRecorder, MessageLog
from twoway.messages import AnyMessage, OptOutChanged, OutboundSMS
from twoway.optouts import ANY_SHORT_CODE, OptOut, OptOutIndex, OptOutStore, refuses
from twoway.service import MONGO_DB, PUBLISHER, CleanupContext

log = structlog.get_logger(__name__)

OPTED_OUT = "opted_out"


class OptOutGuard:
    def __init__(self, store: OptOutStore, gateways: GatewaysConfig, events: EventRecorder) -> None:
        self._store = store
        self._gateways = gateways
        self._events = events
        self.index = OptOutIndex()
        self._changed_while_loading: set[str] | None = None

    async def reload(self) -> None:
        """Load the whole index; numbers announced meanwhile are read again after it, since
        the cursor may have passed them before they changed."""
        self._changed_while_loading = set()
        try:
            index = OptOutIndex([entry async for entry in self._store.entries()])
        finally:
            changed, self._changed_while_loading = self._changed_while_loading, None
        self.index = index
        for phone in changed:
            await self._read(phone)
        log.info("optout_index_loaded", optouts=len(self.index))

    async def apply(self, message: AnyMessage) -> None:
        if isinstance(message, OptOutChanged):
            if self._changed_while_loading is not None:
                self._changed_while_loading.add(message.phone)
            await self._read(message.phone)

    async def _read(self, phone: str) -> list[OptOut]:
        """`phone`'s opt-outs from the database (the index is brought up to date with them)."""
        optouts = await self._store.of_phone(phone)
        self.index.replace(phone, [optout.short_code for optout in optouts])
        return optouts

    def short_code(self, message: OutboundSMS) -> str:
        """The short code `message` goes out from; `ANY_SHORT_CODE` when it is unknown."""
        if message.from_:
            return message.from_
        gateway = self._gateways.get(message.gateway_id)
        return (gateway.default_sender if gateway else None) or ANY_SHORT_CODE

    async def refuses(self, message: OutboundSMS) -> bool:
        short_code = self.short_code(message)
        if not self.index.may_refuse(message.to, short_code):
            return False
        return refuses(await self._read(message.to), message, short_code)

    def wrap(self, handle: Handle[OutboundSMS]) -> Handle[OutboundSMS]:
        """`handle`, for messages the opt-out list lets through."""

        async def guarded(message: OutboundSMS, delivery: Delivery) -> None:
            if await self.refuses(message):
                await self._refuse(message)
            else:
                await handle(message, delivery)

        return guarded

    async def _refuse(self, message: OutboundSMS) -> None:
        gateway = self._gateways.get(message.gateway_id)
        gateway_id = gateway.id if gateway else message.gateway_id
        await self._events.record(message.event("failed", gateway_id, OPTED_OUT))
        metrics.OUTBOUND_SENT.labels(gateway=gateway_id or "none", result=OPTED_OUT).inc()
        log.info("outbound_refused_opted_out", to=message.to, adapter=message.adapter)


OPTOUT_GUARD = web.AppKey("optout_guard", OptOutGuard)


def optout_guard_context(gateways: GatewaysConfig, refresh_seconds: float) -> CleanupContext:
    """Builds the guard (needs the AMQP and MongoDB contexts before it) and keeps it fresh."""

    def guard(app: web.Application) -> OptOutGuard:
        events = EventRecorder(MessageLog(app[MONGO_DB][LOG_COLLECTION]), app[PUBLISHER])
        app[OPTOUT_GUARD] = OptOutGuard(OptOutStore(app[MONGO_DB]), gateways, events)
        return app[OPTOUT_GUARD]

    return control_context(guard, refresh_seconds)
