"""The subscriptions adapter: `JOIN <source>` and `LEAVE <source>` by SMS.

The sender joins or leaves any declared event source, named in full (`bank.Alerts`) or by its
own name (`alerts`) when that is unambiguous, and gets a confirmation; an unknown or missing
name is answered with the names that would work. The keywords and the adapter's own event
sources are settings, so the adapter is built from them (`build_adapter`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from twoway.messages import EventSource
from twoway.sdk import Adapter, HandlerContext
from twoway_subscriptions_adapter.settings import SubscriptionsAdapterSettings

ADAPTER_NAME = "subscriptions"
SMS_LENGTH = 160


def short_name(source: EventSource) -> str:
    """What a texter types: the source's own name, upper-cased (`bank.Alerts` -> `ALERTS`)."""
    return source.name.rpartition(".")[2].upper()


@dataclass(frozen=True)
class Resolved:
    """What a word names: one source, several (ambiguous), or none."""

    matches: tuple[EventSource, ...]

    @property
    def source(self) -> EventSource | None:
        return self.matches[0] if len(self.matches) == 1 else None


def resolve(word: str, sources: Sequence[EventSource]) -> Resolved:
    """The event sources `word` names: a full name, else an own name (case-insensitive)."""
    wanted = word.strip().upper()
    full = tuple(source for source in sources if source.name.upper() == wanted)
    if full or not wanted:
        return Resolved(full)
    return Resolved(tuple(source for source in sources if short_name(source) == wanted))


def choices(keyword: str, names: Sequence[str], opening: str) -> str:
    """`opening` and the names to text after `keyword`, as many as fit in one SMS."""
    if not names:
        return f"{opening} There is nothing to join yet."
    text = f"{opening} Text {keyword} and one of: {names[0]}"
    for name in names[1:]:
        if len(text) + len(name) + 6 > SMS_LENGTH:
            return text + ", ..."
        text += f", {name}"
    return text + "."


def _menu_names(sources: Sequence[EventSource]) -> list[str]:
    """Own names where they are unique, full names where two adapters share one."""
    counts: dict[str, int] = {}
    for source in sources:
        counts[short_name(source)] = counts.get(short_name(source), 0) + 1
    return [short_name(s) if counts[short_name(s)] == 1 else s.name for s in sources]


def build_adapter(settings: SubscriptionsAdapterSettings) -> Adapter:
    adapter = Adapter(ADAPTER_NAME)
    for name in settings.sources:
        adapter.event_source(name, description=f"Join by SMS: {settings.join_keywords[0]} {name}")
    join_keyword, leave_keyword = settings.join_keywords[0], settings.leave_keywords[0]

    async def named_source(context: HandlerContext, keyword: str) -> EventSource | None:
        """The source the SMS names; when it names none (or several), answers with the menu."""
        word = " ".join(context.words)
        sources = await context.services.event_sources()
        resolved = resolve(word, sources)
        if resolved.source is not None:
            return resolved.source
        if len(resolved.matches) > 1:
            names = [source.name for source in resolved.matches]
            opening = f"Several lists are called {word.upper()}."
        else:
            names = _menu_names(sources)
            opening = f"There is no list called {word.upper()}." if word else "Which list?"
        await context.reply(choices(keyword, names, opening))
        return None

    @adapter.handler({"keyword": settings.join_keywords}, name="join")
    async def join(context: HandlerContext) -> None:
        source = await named_source(context, join_keyword)
        if source is None:
            return
        _, created = await context.subscribe(source.name)
        name = short_name(source)
        opening = "You joined" if created else "You are already in"
        await context.reply(f"{opening} {name}. Text {leave_keyword} {name} to stop.")

    @adapter.handler({"keyword": settings.leave_keywords}, name="leave")
    async def leave(context: HandlerContext) -> None:
        source = await named_source(context, leave_keyword)
        if source is None:
            return
        name = short_name(source)
        if await context.unsubscribe(source.name):
            await context.reply(f"You left {name}. Text {join_keyword} {name} to join again.")
        else:
            await context.reply(f"You were not in {name}.")

    return adapter
