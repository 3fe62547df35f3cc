"""Gateway configuration: one YAML file lists every gateway; secrets come from the environment.

default_gateway: sim
gateways:
  - id: sim
    type: mobilefirst-http
    url: http://127.0.0.1:8090/sendSMS
    to_param: to            # SMSConfig.xml toParamName
    from_param: from        # SMSConfig.xml fromParamName
    text_param: text        # SMSConfig.xml textParamName
    default_sender: "12345"
    parameters: {user: twoway}                 # fixed extra parameters
    secret_parameters: {password: SIM_PASSWORD}  # parameter -> environment variable
    timeout: 5
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator


class GatewayConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    type: Literal["mobilefirst-http"]
    url: HttpUrl
    method: Literal["GET", "POST"] = "GET"
    to_param: str = "to"
    from_param: str = "from"
    text_param: str = "text"
    default_sender: str | None = None
    parameters: dict[str, str] = Field(default_factory=dict)
    secret_parameters: dict[str, str] = Field(
        default_factory=dict, description="Parameter name -> environment variable holding it"
    )
    timeout: float = Field(default=10.0, gt=0)

    def secrets(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The secret parameters' values; `KeyError` naming a variable that is not set."""
        missing = [name for name in self.secret_parameters.values() if name not in environ]
        if missing:
            raise KeyError(f"gateway {self.id!r} needs environment variables {missing}")
        return {param: environ[name] for param, name in self.secret_parameters.items()}


class GatewaysConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    default_gateway: str
    gateways: list[GatewayConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_ids(self) -> GatewaysConfig:
        ids = [gateway.id for gateway in self.gateways]
        if len(set(ids)) != len(ids):
            raise ValueError(f"gateway ids must be unique: {ids}")
        if self.default_gateway not in ids:
            raise ValueError(f"default_gateway {self.default_gateway!r} is not one of {ids}")
        return self

    def get(self, gateway_id: str | None) -> GatewayConfig | None:
        """The gateway called `gateway_id`; the default one for None; None when unknown."""
        wanted = gateway_id or self.default_gateway
        return next((gateway for gateway in self.gateways if gateway.id == wanted), None)


def load_gateways(path: Path) -> GatewaysConfig:
    with path.open(encoding="utf-8") as file:
        return GatewaysConfig.model_validate(yaml.safe_load(file))
