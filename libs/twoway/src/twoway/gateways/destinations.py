"""Who a gateway may text: its destination policy and its per-recipient cap (configuration).

A number we text is refused unless it is a possible number (`phonenumbers`), of an allowed
country (when `countries` lists any) and of an allowed type. The default types are the ordinary
ones; refused by default are `premium_rate` and `shared_cost` (texting them can cost per message,
the classic way to turn an SMS service into a bill), `personal_number` (UK 070 and the like, charged
much like premium rate), and `unknown`: a number `phonenumbers` does not know as valid, such as the
fictitious +1 555 numbers, or a range newer than the library's metadata (keep `phonenumbers` up to
date). A development gateway may list `unknown` to text fictitious numbers.

`countries` entries are ISO regions (`US`, `GB`) or calling codes (`+1`, `+44`): a region is the
number's own (+44 7911 ... is Guernsey's `GG`, not `GB`), a calling code covers every region that
shares it (`+1`: the US, Canada and the Caribbean).

The per-recipient cap (`RecipientLimit`) is enforced by outbound (`twoway_outbound.recipient_caps`).
"""

from __future__ import annotations

from typing import Literal, get_args

import phonenumbers
from phonenumbers import PhoneNumberType
from pydantic import BaseModel, ConfigDict, Field, field_validator

NumberType = Literal[
    "fixed_line",
    "mobile",
    "fixed_line_or_mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "unknown",
]
"""`phonenumbers.PhoneNumberType`, by its lower-case name."""

NUMBER_TYPES: dict[int, NumberType] = {
    getattr(PhoneNumberType, name.upper()): name for name in get_args(NumberType)
}

SAFE_NUMBER_TYPES: tuple[NumberType, ...] = tuple(
    name
    for name in get_args(NumberType)
    if name not in ("premium_rate", "shared_cost", "personal_number", "unknown")
)

INVALID = "invalid"
"""The refusal of something that is not even a possible phone number."""

COUNTRY = "country"
"""The refusal of a number outside `countries`."""


class DestinationPolicy(BaseModel):
    """The numbers a gateway may text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    countries: frozenset[str] = Field(
        default=frozenset(), description="ISO regions or +calling codes; empty: any country"
    )
    number_types: frozenset[NumberType] = Field(
        default=frozenset(SAFE_NUMBER_TYPES), min_length=1, description="Types we may text"
    )

    @field_validator("countries", mode="after")
    @classmethod
    def _known_countries(cls, countries: frozenset[str]) -> frozenset[str]:
        unknown = sorted(entry for entry in countries if not _is_country(entry))
        if unknown:
            raise ValueError(f"not an ISO region nor a +calling code: {unknown}")
        return countries


def _is_country(entry: str) -> bool:
    if entry.startswith("+"):
        code = entry[1:]
        return code.isdigit() and int(code) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE
    return entry in phonenumbers.SUPPORTED_REGIONS


def refusal(policy: DestinationPolicy, number: str, default_region: str) -> str | None:
    """Why `policy` refuses to text `number` (`invalid`, `country` or the number's type, such
    as `premium_rate`); None when it may be texted. A number without a country code is read
    as one of `default_region`."""
    try:
        parsed = phonenumbers.parse(number, default_region.upper())
    except phonenumbers.NumberParseException:
        return INVALID
    if not phonenumbers.is_possible_number(parsed):
        return INVALID
    if policy.countries and policy.countries.isdisjoint(
        {f"+{parsed.country_code}", phonenumbers.region_code_for_number(parsed)}
    ):
        return COUNTRY
    kind = NUMBER_TYPES[phonenumbers.number_type(parsed)]
    return None if kind in policy.number_types else kind


class RecipientLimit(BaseModel):
    """At most `count` replies to one number in `seconds`, from all outbound replicas."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = Field(default=10, ge=1)
    seconds: int = Field(default=60, ge=1, le=86400)
