"""Injected faults, shared by the simulated gateway (`POST /faults`) and the demo back-end
(`POST /backend/faults`): the next `count` calls answer `status`, after `delay` seconds."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twoway.http_errors import InvalidRequest


class Faults(BaseModel):
    """What the next `count` calls do: answer `status`, after `delay` seconds."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=1, ge=0)
    status: int = Field(default=500, ge=100, le=599)
    delay: float = Field(default=0.0, ge=0)

    async def inject(self) -> web.Response | None:
        """The injected answer to this call (after the delay), or None: no fault is left."""
        if self.count == 0:
            return None
        self.count -= 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.json_response({"error": "injected fault"}, status=self.status)


F = TypeVar("F", bound=Faults)


async def read_faults(request: web.Request, model: type[F]) -> F:
    """The faults a request's JSON body sets; a 400 naming what is wrong otherwise."""
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as error:
        raise InvalidRequest(400, "invalid_faults", f"bad faults: {error}") from error
