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
        raise InvalidPhoneNumber(f"{mask_phone(raw)!r} is not a phone number: {error}") from error
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhoneNumber(f"{mask_phone(raw)!r} is not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


_SEPARATORS = " ().\\-/_\u00a0\u2007\u2009\u202f\u2010-\u2015\u2212"
"""What may stand between a number's digits: spaces (also no-break and thin ones), parentheses,
dots, dashes (also Unicode's hyphens, en and em dashes and minus), slashes and underscores."""

_PHONE_LIKE = re.compile(
    r"(?<![A-Za-z0-9.+-])(?=[+(%\d])"  # not inside a word, an id, a decimal or a zone offset
    r"(?!\d{4}([-/])\d\d\1\d\d(?!\d))"  # not an ISO (or 2026/11/25) date
    r"(?!\d\d?/\d\d?/\d{4}(?!\d))"  # not a 25/11/2026 or 11/25/2026 date
    r"(?!\d{1,3}(?:\.\d{1,3}){3}(?![\d.]))"  # not an IPv4 address
    r"(?!\d+\.\d+(?![\d.]))"  # not a decimal number
    r"(?:\+|%2[Bb])?\(?\d(?:[" + _SEPARATORS + r"]{0,2}\d){6,14}"  # 7 to 15 digits, separated
    r"(?![A-Za-z0-9+-]|\.\d)"  # ... and standing alone
)
"""A phone number in any usual spelling (`+15551234567`, `555-123-4567`, `+1 (555) 123 4567`,
`07700 900123`, `555/123/4567`, URL-encoded `%2B15551234567`): 7 to 15 digits standing alone,
not part of an id (a ULID, a UUID's group), a timestamp, a date, a decimal number or an IPv4
address."""


def mask_phone(number: str) -> str:
    """Keep the first three and last two characters of a number: `+15*******67`."""
    if len(number) <= 6:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 5) + number[-2:]


def mask_phones_in(text: str) -> str:
    """Every phone number in `text` masked (see `_PHONE_LIKE`): none ever reaches a log."""
    return _PHONE_LIKE.sub(lambda match: mask_phone(match.group(0)), text)
