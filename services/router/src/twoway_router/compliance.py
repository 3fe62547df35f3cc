"""Opt-out compliance, applied to every inbound SMS before any adapter sees it.

STOP (and its synonyms) opts the sender out of the short code it texted and is confirmed; START
opts an opted-out sender back in and is confirmed; HELP is answered with a configured text, even
to an opted-out number. The keyword lists and texts are settings. After Twilio's advanced opt-out:
- a keyword counts when it is the whole SMS (punctuation and case aside), so "CANCEL 42" still
  reaches the adapter that takes CANCEL; `compliance_match=first_word` widens that;
- START from a number that is not opted out is an ordinary SMS (an adapter may ask "reply YES");
- STOPALL is a synonym of STOP: the unit of opt-out is the short code.
Outbound refuses anything later to an opted-out number (`twoway.optouts`); the router's own
confirmations get through as exemptions written before they are sent.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal

import structlog

from twoway import metrics
from twoway.broker import Publisher, repeat_headers
from twoway.messages import InboundSMS, OptOutChanged, OutboundSMS, derive_message_id
from twoway.optouts import ANY_SHORT_CODE, Exemption, OptOutStore
from twoway.topology import CONTROL_EXCHANGE, OUTBOUND_EXCHANGE, outbound_key
from twoway_router.settings import RouterSettings

log = structlog.get_logger(__name__)

ComplianceAction = Literal["opt_out", "opt_in", "help"]
ROUTER_NAME = "router"
"""The `adapter` of the SMS the router sends itself."""

_PUNCTUATION = string.punctuation + string.whitespace


def _word(text: str) -> str:
    return text.strip(_PUNCTUATION).casefold()


@dataclass(frozen=True)
class ComplianceKeywords:
    opt_out: frozenset[str]
    opt_in: frozenset[str]
    help: frozenset[str]
    first_word: bool

    @classmethod
    def from_settings(cls, settings: RouterSettings) -> ComplianceKeywords:
        def words(keywords: list[str]) -> frozenset[str]:
            return frozenset(_word(keyword) for keyword in keywords)

        return cls(
            words(settings.optout_keywords),
            words(settings.optin_keywords),
            words(settings.help_keywords),
            settings.compliance_match == "first_word",
        )

    def action(self, message: InboundSMS) -> ComplianceAction | None:
        """The compliance keyword `message` is, if any."""
        said = _word(message.keyword if self.first_word else message.text)
        if said in self.opt_out:
            return "opt_out"
        if said in self.opt_in:
            return "opt_in"
        if said in self.help:
            return "help"
        return None


async def send_sms(publisher: Publisher, message: OutboundSMS, *, repeat: bool) -> None:
    """Send an SMS of the router's own (a confirmation, a fallback reply); `repeat`: the SMS it
    answers may have been answered before (`twoway.broker.may_repeat`)."""
    await publisher.publish(
        message,
        exchange=OUTBOUND_EXCHANGE,
        routing_key=outbound_key(message.gateway_id),
        headers=repeat_headers(repeat),
    )


class Compliance:
    """Applies the compliance keywords: records opt-outs and answers, before routing."""

    def __init__(self, settings: RouterSettings, store: OptOutStore, publisher: Publisher) -> None:
        self._keywords = ComplianceKeywords.from_settings(settings)
        self._replies: dict[ComplianceAction, str] = {
            "opt_out": settings.optout_reply,
            "opt_in": settings.optin_reply,
            "help": settings.help_reply,
        }
        self._store = store
        self._publisher = publisher

    async def _announce(self, phone: str) -> None:
        """Tell every outbound replica that `phone`'s opt-outs changed; raises `PublishFailed`
        (the SMS is then handled again) because a stale outbound cache would let messages by."""
        await self._publisher.publish(
            OptOutChanged(phone=phone), exchange=CONTROL_EXCHANGE, routing_key="", mandatory=False
        )

    async def handle(self, message: InboundSMS, *, repeat: bool) -> bool:
        """Apply `message` if it is a compliance keyword; True when the router answered it (it
        goes to no adapter), False when it is routed as usual. `repeat`: `message` may have
        been handled before; its answer has the same id each time (and so the same exemption),
        so outbound sends it once."""
        action = self._keywords.action(message)
        if action is None:
            return False
        phone, short_code = message.sender, message.recipient or ANY_SHORT_CODE
        text = self._replies[action]
        reply_id = derive_message_id(message.message_id, ROUTER_NAME, action)
        reply = message.reply(text, message_id=reply_id, adapter=ROUTER_NAME) if text else None
        exemption = Exemption.of(reply) if reply else None
        if action == "opt_out":
            await self._store.opt_out(phone, short_code, exemption)
            await self._announce(phone)
        elif action == "opt_in":
            if not await self._store.opt_in(phone, short_code):
                return False
            await self._announce(phone)
        elif exemption is not None:
            await self._store.exempt(phone, short_code, exemption)
        if reply is not None:
            await send_sms(self._publisher, reply, repeat=repeat)
        metrics.COMPLIANCE.labels(action=action).inc()
        log.info("compliance_keyword", action=action, sender=phone, recipient=short_code)
        return True
