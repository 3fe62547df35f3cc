"""The bank adapter: an adapter that forwards SMS to a back-end over HTTP.

- `BAL` (or `BALANCE`) asks the back-end for the sender's balance and replies with it.
- `TRANSFER` starts a conversation: how much? to which account? confirm with YES; then it asks
  the back-end to move the money (with the SMS's message id as `Idempotency-Key`, so a retry never
  moves it twice).

When the back-end is down or too slow, the handler fails and the SDK's failure policy retries it
later, then sends the texter the polite `failure_reply`. The back-end is `backend_url`
(`TWOWAY_BACKEND_URL`); under `make run` it is the demo back-end of the gateway simulator.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from urllib.parse import quote

from pydantic import Field

from twoway.sdk import Adapter, AdapterSettings, HandlerContext
from twoway.sdk_http import BackendError


class BankSettings(AdapterSettings):
    """The bank adapter's defaults: its own health port and the demo back-end."""

    port: int = Field(default=9111, ge=0, le=65535)
    backend_url: str = "http://127.0.0.1:8090/backend/"


adapter = Adapter("bank")
CENTS = Decimal("0.01")


def parse_amount(text: str) -> Decimal | None:
    """A positive amount of money with at most two decimals (`12`, `12.5`, `$12.50`), or None."""
    try:
        amount = Decimal(text.strip().removeprefix("$").replace(",", ""))
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(CENTS):
        return None
    return amount.quantize(CENTS)


def parse_account(text: str) -> str | None:
    """An account number: 6 to 20 digits, spaces and dashes ignored."""
    digits = text.strip().replace(" ", "").replace("-", "")
    return digits if digits.isdigit() and 6 <= len(digits) <= 20 else None


@adapter.handler({"keyword": ["BAL", "BALANCE"]})
async def balance(context: HandlerContext) -> None:
    try:
        response = await context.http.get(
            f"accounts/{quote(context.message.sender, safe='+')}/balance"
        )
    except BackendError as error:
        if error.status == 404:
            await context.reply("We have no account for this number.")
            return
        raise
    account = response.json()
    await context.reply(f"Your balance is {account['balance']} {account['currency']}.")


@adapter.handler({"keyword": "TRANSFER"})
async def transfer(context: HandlerContext) -> None:
    await context.ask("How much would you like to transfer?", next="transfer_amount")


@adapter.step()
async def transfer_amount(context: HandlerContext) -> None:
    amount = parse_amount(context.message.text)
    if amount is None:
        await context.ask("Please send an amount, like 12.50.", next="transfer_amount")
        return
    await context.ask(
        f"To which account should {amount} go?",
        next="transfer_account",
        state={"amount": str(amount)},
    )


@adapter.step()
async def transfer_account(context: HandlerContext) -> None:
    assert context.conversation is not None
    state = context.conversation.state
    account = parse_account(context.message.text)
    if account is None:
        await context.ask("Please send the account number.", next="transfer_account", state=state)
        return
    await context.ask(
        f"Send {state['amount']} to account {account}? Reply YES to confirm.",
        next="transfer_confirm",
        state={**state, "account": account},
    )


@adapter.step()
async def transfer_confirm(context: HandlerContext) -> None:
    assert context.conversation is not None
    state = context.conversation.state
    if context.message.text.strip().upper() != "YES":
        await context.reply("Transfer cancelled.")
        return
    response = await context.http.post(
        "transfers",
        json={
            "from": context.message.sender,
            "to_account": state["account"],
            "amount": state["amount"],
        },
        headers={"Idempotency-Key": context.message.message_id},
        idempotent=True,
        raise_for_status=False,
    )
    if response.status == 422:
        await context.reply(f"Transfer refused: {response.json().get('error', 'not allowed')}.")
        return
    done = response.raise_for_status().json()
    await context.reply(
        f"Sent {done['amount']} to account {state['account']}. Your balance is {done['balance']}."
    )
