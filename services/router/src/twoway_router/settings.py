from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from twoway.settings import WorkerSettings

FallbackAction = Literal["none", "reply", "handler"]


class UnmatchedFallback(BaseModel):
    """What the router does with an SMS no handler matched, for one gateway and/or recipient.

    `none` parks the SMS in `router.unmatched`; `reply` answers it with `text`; `handler` sends it
    to `adapter`'s handler called `handler` (Kannel's `default` service). `gateway_id` and
    `recipient` left out match any; the most specific matching rule applies.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    gateway_id: str | None = None
    recipient: str | None = None
    action: FallbackAction = "none"
    text: str = ""
    adapter: str = ""
    handler: str = ""

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.action == "reply" and not self.text:
            raise ValueError("a reply fallback needs a text")
        if self.action == "handler" and not (self.adapter and self.handler):
            raise ValueError("a handler fallback needs an adapter and a handler")
        return self


class RouterSettings(WorkerSettings):
    """Settings of the router (`TWOWAY_` environment variables; lists and objects as JSON)."""

    port: int = Field(default=9101, ge=0, le=65535)
    registry_refresh_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Reload the handler table this often, besides on every sms.control message",
    )

    optout_keywords: list[str] = Field(
        default=["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"],
        description="Opt the sender out of the short code it texted",
    )
    optin_keywords: list[str] = Field(
        default=["START", "UNSTOP", "YES"],
        description="Opt an opted-out sender back in (from anyone else: an ordinary SMS)",
    )
    help_keywords: list[str] = Field(default=["HELP", "INFO"])
    compliance_match: Literal["whole_text", "first_word"] = Field(
        default="whole_text",
        description="whole_text: the SMS is just the keyword ('CANCEL 42' reaches an adapter); "
        "first_word: the SMS starts with it",
    )
    optout_reply: str = Field(
        default="You are unsubscribed and will get no more messages from this number. "
        "Reply START to subscribe again.",
        description="The opt-out confirmation ('' sends none)",
    )
    optin_reply: str = Field(
        default="You are subscribed again. Reply STOP to unsubscribe, HELP for help.",
        description="The opt-in confirmation ('' sends none)",
    )
    help_reply: str = Field(
        default="Twoway SMS. Reply STOP to unsubscribe. Message and data rates may apply.",
        description="The answer to HELP ('' sends none)",
    )

    dedupe_window_seconds: float = Field(
        default=30.0,
        ge=0,
        description="An SMS without a gateway id that repeats sender, recipient and text within "
        "this window is a gateway's retry; 0 turns content dedupe off",
    )
    dedupe_id_retention_seconds: float = Field(
        default=86_400.0, gt=0, description="How long a gateway message id is remembered"
    )

    unmatched_fallbacks: list[UnmatchedFallback] = Field(
        default=[], description="Per gateway/recipient; without a matching rule: park (none)"
    )
    unmatched_retention_seconds: float = Field(
        default=30 * 86_400.0, gt=0, description="How long the unmatched record keeps an SMS"
    )
