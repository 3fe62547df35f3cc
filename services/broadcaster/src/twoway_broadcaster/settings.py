from __future__ import annotations

from pydantic import Field

from twoway.settings import WorkerSettings


class BroadcasterSettings(WorkerSettings):
    """Settings of the broadcaster (`TWOWAY_` environment variables)."""

    port: int = Field(default=9103, ge=0, le=65535)
    parallel_broadcasts: int = Field(
        default=2, ge=1, description="Broadcasts one worker fans out at the same time"
    )
    batch_size: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        description="Subscribers read, checked for opt-outs, published and checkpointed together",
    )
    lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A worker that has not checkpointed for this long is taken to be dead, and "
        "another worker resumes its broadcast",
    )
    slice_seconds: float = Field(
        default=60.0,
        gt=0,
        description="After this long on one broadcast, a worker checkpoints and queues the rest "
        "as a fresh command (far inside RabbitMQ's consumer timeout, and fair to others)",
    )
    events_prefetch: int = Field(
        default=1000, ge=1, description="Delivery events counted per database write, at most"
    )
