"""The skeleton adapter: `HELLO <name>` is answered with a greeting.

Replace the handler with your own: keep the rules in plain functions (like `greeting`) that the
unit tests call directly, and the handler thin (read the message, call the rule, reply).
"""

from __future__ import annotations

from pydantic import Field

from twoway.sdk import Adapter, AdapterSettings, HandlerContext


class SkeletonSettings(AdapterSettings):
    """Settings of the skeleton adapter (`TWOWAY_` environment variables)."""

    port: int = Field(default=9199, ge=0, le=65535)


adapter = Adapter("skeleton")


def greeting(words: list[str]) -> str:
    """The reply to `HELLO <words>`."""
    name = " ".join(words).strip()
    return f"Hello, {name}!" if name else "Hello! Send HELLO and your name."


@adapter.handler({"keyword": "HELLO"})
async def hello(context: HandlerContext) -> None:
    await context.reply(greeting(context.words))
