"""Phone numbers: normalisation to E.164 (with `phonenumbers`) and masking for logs."""

from __future__ import annotations

import contextlib
import re
from typing import Literal

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


NumberFormat = Literal["auto", "e164", "international", "national"]
"""How a gateway writes phone numbers: `e164` (`+447700900123`), `international` (the country
code without `+`: `447700900123`, as Kannel's SMSCs, Vonage and Infobip send them), `national`
(in the gateway's region: `07700 900123`), or `auto` (see `parse_gateway_number`)."""

MAX_NUMBER_LENGTH = 32
"""The longest number field we read: E.164 has at most 15 digits, so longer is never a number."""


def _possible(parsed: phonenumbers.PhoneNumber, raw: str) -> str:
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhoneNumber(f"{mask_phone(raw)!r} is not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _parsed(raw: str, region: str | None) -> phonenumbers.PhoneNumber:
    try:
        return phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as error:
        raise InvalidPhoneNumber(f"{mask_phone(raw)!r} is not a phone number: {error}") from error


def parse_gateway_number(raw: str, number_format: NumberFormat, region: str) -> str:
    """A number as a gateway wrote it, in E.164; `InvalidPhoneNumber` when it is not one.

    `auto` tries, in order: a `+` or `00` prefix (international); a number valid in `region`; a
    valid number read as international digits; then the same two readings merely possible (the
    right length: numbers of ranges newer than the metadata, or reserved for fiction). Explicit
    formats need only a possible number, since the gateway said how to read it."""
    number = raw.strip()
    if len(number) > MAX_NUMBER_LENGTH:
        raise InvalidPhoneNumber(f"longer than {MAX_NUMBER_LENGTH} characters")
    if number_format == "national":
        return _possible(_parsed(number, region.upper()), number)
    if number_format == "international":
        return _possible(_parsed("+" + number.removeprefix("+"), None), number)
    if number_format == "e164" or number.startswith("+"):
        return _possible(_parsed(number, None), number)
    if number.startswith("00"):
        return _possible(_parsed("+" + number[2:], None), number)
    readings = []
    for candidate, candidate_region in ((number, region.upper()), ("+" + number, None)):
        with contextlib.suppress(phonenumbers.NumberParseException):
            readings.append(phonenumbers.parse(candidate, candidate_region))
    for accept in (phonenumbers.is_valid_number, phonenumbers.is_possible_number):
        for parsed in readings:
            if accept(parsed):
                return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    raise InvalidPhoneNumber(
        f"{mask_phone(number)!r} is neither a number of region {region.upper()} nor an "
        "international number (write it with + and the country code)"
    )


def format_for_gateway(number: str, number_format: NumberFormat, region: str) -> str:
    """An E.164 `number` as the gateway expects it; anything else (a short code, an
    alphanumeric sender id) as it is. `national` applies to numbers of `region` only: a gateway
    that takes national numbers reaches no other country, so a foreign number stays E.164."""
    if not number.startswith("+") or number_format in ("e164", "auto"):
        return number
    if number_format == "international":
        return number[1:]
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    # By calling code, not region: +44 numbers of Guernsey or Jersey are national numbers in GB.
    if parsed.country_code != phonenumbers.country_code_for_region(region.upper()):
        return number
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return "".join(character for character in national if character.isdigit())
