"""SIGTERM to a real worker process (the echo adapter, started as `make run` and Kubernetes start
it) in the middle of a backlog: it exits with status 0, its probes fail from then on, and every
SMS it was given is either answered or back in its queue, never lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection

from tests.support.broker import drain, listening, queue_length
from tests.support.outbound_replicas import wait_ready
from twoway.broker import Publisher
from twoway.handler_policy import HandlerPolicySettings
from twoway.messages import InboundSMS, OutboundSMS
from twoway.topology import (
    ADAPTERS_EXCHANGE,
    HEADER_HANDLER,
    OUTBOUND_EXCHANGE,
    adapter_queue,
    declare_work_queue,
)
from twoway_devstack import ServerUrls
from twoway_devstack.processes import free_port, log_tail

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

QUEUE = adapter_queue("echo")
BACKLOG = 3000


async def queue_backlog(amqp: AbstractRobustConnection) -> set[str]:
    """`BACKLOG` ECHO SMS waiting in the echo adapter's queue (declared as the adapter declares
    it), as the router puts them there; their message ids."""
    publisher = await Publisher.open(amqp, confirm_timeout=10)
    await declare_work_queue(
        publisher.channel,
        QUEUE,
        exchange=ADAPTERS_EXCHANGE,
        binding_keys=["echo"],
        retry_delays=sorted(set(HandlerPolicySettings().handler_retry_delays)),
    )
    messages = [
        InboundSMS(gateway_id="sim", sender="+15551234567", recipient="12345", text=f"ECHO {n}")
        for n in range(BACKLOG)
    ]

    async def publish(message: InboundSMS) -> None:
        await publisher.publish(
            message,
            exchange=ADAPTERS_EXCHANGE,
            routing_key="echo",
            headers={HEADER_HANDLER: "echo"},
        )

    for start in range(0, BACKLOG, 200):  # confirms awaited 200 at a time
        await asyncio.gather(*(publish(message) for message in messages[start : start + 200]))
    await publisher.channel.close()
    return {message.message_id for message in messages}


async def probe_refused(port: int, within: float = 5.0) -> bool:
    """Whether `/readyz` stops answering (as a kubelet's probe sees it) within `within` s."""
    deadline = asyncio.get_running_loop().time() + within
    async with aiohttp.ClientSession() as http:
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz"):
                    pass
            except aiohttp.ClientConnectionError:
                return True
            await asyncio.sleep(0.01)
    return False


async def accounted_for(
    amqp: AbstractRobustConnection, replies: str, sent: set[str], within: float = 30.0
) -> tuple[set[str], set[str]]:
    """The SMS of `sent` answered (in `replies`) and those back in the adapter's queue, taken
    until every one is either or `within` seconds passed: the broker puts a closed channel's
    unacked messages back a moment after the process exited, and taking them one `basic.get` at
    a time takes seconds."""
    replied_to: set[str] = set()
    still_queued: set[str] = set()
    deadline = asyncio.get_running_loop().time() + within
    while replied_to | still_queued != sent and asyncio.get_running_loop().time() < deadline:
        for reply in await drain(amqp, replies, expect=await queue_length(amqp, replies)):
            replied_to.add(str(OutboundSMS.model_validate_json(reply.body).in_reply_to))
        for message in await drain(amqp, QUEUE, expect=await queue_length(amqp, QUEUE)):
            still_queued.add(str(message.message_id))
        await asyncio.sleep(0.05)
    return replied_to, still_queued


@pytest.mark.usefixtures("mongo_db")
async def test_sigterm_mid_backlog_exits_0_and_loses_no_sms(
    servers: ServerUrls, database_name: str, amqp: AbstractRobustConnection, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "echo.log"
    environment = {
        **os.environ,
        "TWOWAY_AMQP_URL": servers.amqp_url,
        "TWOWAY_MONGO_URL": servers.mongo_url,
        "TWOWAY_MONGO_DATABASE": database_name,
        "TWOWAY_PORT": str(port),
        "TWOWAY_LOG_FORMAT": "console",
    }
    async with listening(amqp, OUTBOUND_EXCHANGE, "outbound.#") as replies:
        sent = await queue_backlog(amqp)
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "twoway_echo", env=environment, stdout=output, stderr=output
            )
        try:
            await wait_ready([port], within=30)
        except RuntimeError:
            process.kill()
            raise
        process.send_signal(signal.SIGTERM)
        refused = await probe_refused(port)
        status = await asyncio.wait_for(process.wait(), 30)
        replied_to, still_queued = await accounted_for(amqp, replies, sent)

    assert status == 0, log_tail(log)
    assert refused
    assert still_queued, "the adapter finished the backlog before SIGTERM: nothing was tested"
    assert replied_to | still_queued == sent
