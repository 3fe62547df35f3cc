from __future__ import annotations

from pydantic import Field

from twoway.sdk import AdapterSettings


class SubscriptionsAdapterSettings(AdapterSettings):
    """Settings of the subscriptions adapter (`TWOWAY_` environment variables; lists as JSON)."""

    port: int = Field(default=9112, ge=0, le=65535)
    join_keywords: list[str] = Field(
        default=["JOIN"], min_length=1, description="`JOIN <source>` subscribes the sender"
    )
    leave_keywords: list[str] = Field(
        default=["LEAVE"], min_length=1, description="`LEAVE <source>` unsubscribes the sender"
    )
    sources: list[str] = Field(
        default=["News"],
        description="Event sources this adapter declares (`subscriptions.<name>`); JOIN accepts "
        "every declared event source, these and other adapters'",
    )
