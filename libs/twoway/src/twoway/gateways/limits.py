"""How many MO a gateway's senders may post to ingress: a gateway's `inbound_limits`.

    inbound_limits:
      per_sender: {count: 10, seconds: 60}   # the default; null: no limit per sender
      per_gateway: {count: 3000, seconds: 60} # off (null) by default

A post over a limit gets 429 with Retry-After, and nothing of it is queued (ingress's
`twoway_ingress.inbound_limits` counts, shared by every ingress replica).

The default, 10 MO per sender per minute: a person typing at a keyword service sends one SMS every
several seconds at best, and a conversation (a menu, a three-question form, a quiz answered
quickly) stays well inside 10 a minute, as does a gateway's retry of a post now and then. What
goes over it is a machine: a script, or two auto-responders answering each other, which would
otherwise get a reply to every post. No limit per gateway by default: a gateway's legitimate
volume depends on the service (ten thousand subscribers answering a broadcast within a minute),
so only its operator can pick one.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Window(BaseModel):
    """At most `count` MO in each window of `seconds`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = Field(ge=1)
    seconds: int = Field(ge=1, le=86_400, description="Window length; at most a day")


class InboundLimits(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    per_sender: Window | None = Field(
        default=Window(count=10, seconds=60), description="MO from one sender; None: unlimited"
    )
    per_gateway: Window | None = Field(
        default=None, description="MO through this gateway, all senders; None: unlimited"
    )
