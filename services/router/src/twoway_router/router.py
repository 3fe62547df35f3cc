"""The router: for each inbound SMS, find the handler that takes it and dispatch it.

The handler table lives in memory (`RoutingTable`) and is reloaded from the registry when an
adapter announces a change on `sms.control`, and every `registry_refresh_seconds` as a safety net.
An SMS no handler matched is never dropped: it is counted, logged and parked in `router.unmatched`.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from aio_pika.abc import AbstractIncomingMessage

from twoway import metrics
from twoway.broker import Publisher
from twoway.messages import HandlerRegistration, InboundSMS
from twoway.registry import HandlerRegistry
from twoway.routing import FilterError, RoutingTable, validate_registration
from twoway.topology import (
    ADAPTERS_EXCHANGE,
    DEAD_LETTER_EXCHANGE,
    HEADER_HANDLER,
    HEADER_REASON,
    UNMATCHED_QUEUE,
)

log = structlog.get_logger(__name__)


def valid_registrations(registrations: list[HandlerRegistration]) -> list[HandlerRegistration]:
    """The registrations whose filters compile; the others are logged and left out."""
    valid = []
    for registration in registrations:
        try:
            validate_registration(registration)
        except FilterError as error:
            log.error(
                "handler_filter_invalid",
                adapter=registration.adapter,
                handler=registration.handler,
                error=str(error),
            )
        else:
            valid.append(registration)
    return valid


class Router:
    def __init__(self, registry: HandlerRegistry, publisher: Publisher) -> None:
        self._registry = registry
        self._publisher = publisher
        self._reload_lock = asyncio.Lock()
        self.table = RoutingTable([])

    async def reload(self) -> None:
        async with self._reload_lock:
            registrations = valid_registrations(await self._registry.load_all())
            self.table = RoutingTable(registrations)
        log.info("handler_table_loaded", handlers=len(self.table))

    async def route(self, message: InboundSMS, incoming: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        registration = self.table.match(message)
        metrics.ROUTING_SECONDS.observe(time.perf_counter() - started)
        if registration is None:
            await self._park_unmatched(message, incoming)
            return
        await self._publisher.publish_body(
            incoming.body,
            exchange=ADAPTERS_EXCHANGE,
            routing_key=registration.adapter,
            headers={HEADER_HANDLER: registration.handler},
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            message_type=message.type,
        )
        metrics.ROUTED.labels(adapter=registration.adapter).inc()
        log.info(
            "sms_routed",
            adapter=registration.adapter,
            handler=registration.handler,
            keyword=message.keyword,
        )

    async def _park_unmatched(self, message: InboundSMS, incoming: AbstractIncomingMessage) -> None:
        await self._publisher.publish_body(
            incoming.body,
            exchange=DEAD_LETTER_EXCHANGE,
            routing_key=UNMATCHED_QUEUE,
            headers={HEADER_REASON: f"no handler matched keyword {message.keyword!r}"},
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            message_type=message.type,
        )
        metrics.UNMATCHED.inc()
        log.warning(
            "sms_unmatched",
            keyword=message.keyword,
            gateway_id=message.gateway_id,
            recipient=message.recipient,
        )
