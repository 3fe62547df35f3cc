"""Phone numbers: normalisation to E.164 (with `phonenumbers`) and masking for logs."""

from __future__ import annotations

import re

import phonenumbers


class InvalidPhoneNumber(ValueError):
    """A string that is not a usable phone number."""


def normalise_phone(raw: str, default_region: str) -> str:
    """`raw` in E.164 (`+15551234567`); numbers without a country code take `default_region`."""
    try:
        parsed = phonenumbers.parse(raw, default_region.upper())
    except phonenumbers.NumberParseException as error:
        raise InvalidPhoneNumber(f"{raw!r} is not a phone number: {error}") from error
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhoneNumber(f"{raw!r} is not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


_PHONE_LIKE = re.compile(r"(?<![A-Za-z0-9-])\+?\d{7,15}(?![A-Za-z0-9-])")
"""7 to 15 digits standing alone (not part of an id such as a ULID or a UUID's group)."""


def mask_phone(number: str) -> str:
    """Keep the first three and last two characters of a number: `+15*******67`."""
    if len(number) <= 6:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 5) + number[-2:]


def mask_phones_in(text: str) -> str:
    """Every run of 7 to 15 digits in `text` masked: phone numbers never reach a log."""
    return _PHONE_LIKE.sub(lambda match: mask_phone(match.group(0)), text)
