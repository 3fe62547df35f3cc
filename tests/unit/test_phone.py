"""Phone numbers: E.164 normalisation and masking for logs."""

from __future__ import annotations

import pytest

from twoway.phone import InvalidPhoneNumber, mask_phone, mask_phones_in, normalise_phone

VALID = (
    ("international", "+14155552671", "US", "+14155552671"),
    ("international-other-region", "+14155552671", "GB", "+14155552671"),
    ("fictional-555-is-possible", "+15551234567", "US", "+15551234567"),
    ("national-parentheses", "(415) 555-2671", "US", "+14155552671"),
    ("national-digits", "4155552671", "US", "+14155552671"),
    ("national-with-trunk-1", "1 415 555 2671", "US", "+14155552671"),
    ("spaces-and-dashes", "+1 415-555-2671", "US", "+14155552671"),
    ("uk-national", "07700 900123", "GB", "+447700900123"),
    ("uk-region-lower-case", "07700 900123", "gb", "+447700900123"),
    ("uk-international", "+44 7700 900123", "US", "+447700900123"),
    ("double-zero-prefix-from-gb", "0044 7700 900123", "GB", "+447700900123"),
)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [case[1:] for case in VALID],
    ids=[case[0] for case in VALID],
)
def test_normalise_phone(raw: str, region: str, expected: str) -> None:
    assert normalise_phone(raw, region) == expected


INVALID = (
    ("word", "hello", "US"),
    ("empty", "", "US"),
    ("too-short", "123", "US"),
    ("too-long", "+1415555267100000", "US"),
    ("national-without-region-context", "07700 900123", "ZZ"),
)


@pytest.mark.parametrize(
    ("raw", "region"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_normalise_phone_rejects(raw: str, region: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalise_phone(raw, region)
    assert repr(mask_phone(raw)) in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "raw", ["+1415555267100000", "555-123-4567-890-12", "(555) 123 4567 890 123"]
)
def test_the_error_never_repeats_the_number(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalise_phone(raw, "US")
    assert raw not in str(caught.value)
    assert raw[3:-2] not in str(caught.value)


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("+14155552671", "+14*******71"),
        ("447700900123", "447*******23"),
        ("1234567", "123**67"),
        ("123456", "******"),
        ("", ""),
    ],
    ids=["e164", "no-plus", "seven-digits", "six-or-fewer-fully-masked", "empty"],
)
def test_mask_phone(number: str, expected: str) -> None:
    assert mask_phone(number) == expected
    assert len(mask_phone(number)) == len(number)


MASKING = (
    ("e164-in-text", "sms from +14155552671 ok", "sms from +14*******71 ok"),
    ("national-digits-in-text", "to 4155552671.", "to 415*****71."),
    ("key-value", "sender=+447700900123&x=1", "sender=+44********23&x=1"),
    ("two-numbers", "+14155552671,+447700900123", "+14*******71,+44********23"),
    ("whole-string", "+14155552671", "+14*******71"),
    ("dashes", "call 555-123-4567 now", "call 555*******67 now"),
    ("dots", "555.123.4567", "555*******67"),
    ("spaces-and-country-code", "from +1 555 123 4567", "from +1 **********67"),
    ("parentheses", "(555) 123-4567", "(55*********67"),
    ("country-code-and-parentheses", "+1 (555) 123-4567", "+1 ************67"),
    ("uk-national-spaced", "07700 900123", "077*******23"),
    ("url-encoded-plus", "to=%2B15551234567&x=1", "to=%2B*********67&x=1"),
    ("url-encoded-plus-lower-case", "to=%2b15551234567", "to=%2b*********67"),
    ("slashes", "555/123/4567", "555*******67"),
    ("underscores", "555_123_4567", "555*******67"),
    ("en-dashes", "call 555\u2013123\u20134567 now", "call 555*******67 now"),
    ("no-break-spaces", "+1\u00a0555\u00a0123\u00a04567", "+1\u00a0**********67"),
    ("two-numbers-side-by-side", "5551234567 5557654321", "555*****67 555*****21"),
    ("short-number-untouched", "short code 12345", "short code 12345"),
    ("six-digits-untouched", "code 123456", "code 123456"),
    ("ulid-untouched", "01JH5Z8K3QW7N2M4P6R8T0V2X4", "01JH5Z8K3QW7N2M4P6R8T0V2X4"),
    (
        "ulid-with-long-digit-run-untouched",
        "01JH5Z8K3Q12345678901234X4",
        "01JH5Z8K3Q12345678901234X4",
    ),
    (
        "iso-timestamp-untouched",
        "2026-11-25T10:30:00.123456+00:00",
        "2026-11-25T10:30:00.123456+00:00",
    ),
    ("iso-timestamp-z-untouched", "2026-11-25T10:30:00Z", "2026-11-25T10:30:00Z"),
    ("date-and-time-untouched", "2026-11-25 10:30:00", "2026-11-25 10:30:00"),
    ("slashed-date-untouched", "2026/11/25", "2026/11/25"),
    ("day-month-year-untouched", "on 25/11/2026", "on 25/11/2026"),
    ("month-day-year-untouched", "on 1/25/2026", "on 1/25/2026"),
    ("ipv4-untouched", "peer 192.168.100.200:5672", "peer 192.168.100.200:5672"),
    ("decimal-untouched", "took 0.1234567 s", "took 0.1234567 s"),
    (
        "uuid-of-digits-untouched",
        "12345678-1234-1234-1234-123456789012",
        "12345678-1234-1234-1234-123456789012",
    ),
    ("long-digit-run-untouched", "1234567890123456", "1234567890123456"),
    ("no-digits", "hello world", "hello world"),
)


@pytest.mark.parametrize(
    ("text", "expected"), [case[1:] for case in MASKING], ids=[case[0] for case in MASKING]
)
def test_mask_phones_in(text: str, expected: str) -> None:
    assert mask_phones_in(text) == expected
