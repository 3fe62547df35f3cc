"""`twoway-gateway-sim` serves the simulator.

`twoway-gateway-sim send FROM TO TEXT` posts one MO message to ingress, as a phone would.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import aiohttp

from twoway.logs import configure_logging
from twoway.service import run_service
from twoway_gateway_sim.settings import GatewaySimSettings
from twoway_gateway_sim.simulator import create_app, post_to_ingress


async def send_mo(ingress_url: str, sender: str, recipient: str, text: str) -> int:
    """Post one MO and print ingress's answer; exit status 0 if ingress accepted it."""
    fields = {"from": sender, "to": recipient, "text": text}
    async with aiohttp.ClientSession() as http:
        try:
            status, body = await post_to_ingress(http, ingress_url, fields)
        except aiohttp.ClientError as error:
            print(f"ingress at {ingress_url} did not answer: {error}", file=sys.stderr)
            return 1
    print(status, body)
    return 0 if status < 300 else 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="twoway-gateway-sim", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    send = commands.add_parser("send", help="post one MO message to ingress")
    send.add_argument("sender")
    send.add_argument("recipient")
    send.add_argument("text")
    args = parser.parse_args()
    settings = GatewaySimSettings()
    if args.command == "send":
        sys.exit(asyncio.run(send_mo(settings.ingress_url, args.sender, args.recipient, args.text)))
    configure_logging(settings, "gateway-sim")
    run_service(create_app(settings), settings, settings.port)


if __name__ == "__main__":
    main()
