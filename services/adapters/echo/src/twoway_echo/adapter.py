"""The echo adapter: `ECHO <words>` is answered with `<words>`."""

from __future__ import annotations

from twoway.sdk import Adapter, HandlerContext

adapter = Adapter("echo")


@adapter.handler({"keyword": "ECHO"})
async def echo(context: HandlerContext) -> None:
    words = " ".join(context.words)
    await context.reply(words or "Send ECHO followed by some words, and they come back to you.")
