"""SMS text encoding and segmentation (3GPP TS 23.038 and 23.040), pure functions.

A text that the GSM 03.38 alphabet (with its extension table) can write goes as GSM-7: 160 septets
in one SMS, 153 per part of a concatenated SMS (the user data header takes 7). An extension
character (`^{}\\[~]|€` and form feed) costs two septets, and a part never ends between the escape
and its character. Any other text goes as UCS-2: 70 UTF-16 code units in one SMS, 67 per part, and
a part never splits a surrogate pair (an emoji).

`transliterate` turns typographic punctuation (smart quotes, dashes, ellipsis, odd spaces) into
GSM characters; `prepare` applies it only when that makes the whole text GSM-7, which is the
point: one stray curly quote must not turn a 160-character SMS into three UCS-2 parts.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cache
from typing import Literal

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

Encoding = Literal["gsm7", "ucs2"]

GSM7_SINGLE = 160
GSM7_PART = 153
UCS2_SINGLE = 70
UCS2_PART = 67

_TRANSLITERATION = str.maketrans(
    {
        "\u2018": "'",  # left single quotation mark
        "\u2019": "'",  # right single quotation mark, apostrophe
        "\u201a": "'",  # single low-9 quotation mark
        "\u201b": "'",  # single high-reversed-9 quotation mark
        "\u2032": "'",  # prime
        "\u2039": "'",  # single left-pointing angle quotation mark
        "\u203a": "'",  # single right-pointing angle quotation mark
        "\u201c": '"',  # left double quotation mark
        "\u201d": '"',  # right double quotation mark
        "\u201e": '"',  # double low-9 quotation mark
        "\u201f": '"',  # double high-reversed-9 quotation mark
        "\u2033": '"',  # double prime
        "\u00ab": '"',  # left-pointing double angle quotation mark
        "\u00bb": '"',  # right-pointing double angle quotation mark
        "\u2010": "-",  # hyphen
        "\u2011": "-",  # non-breaking hyphen
        "\u2012": "-",  # figure dash
        "\u2013": "-",  # en dash
        "\u2014": "-",  # em dash
        "\u2015": "-",  # horizontal bar
        "\u2212": "-",  # minus sign
        "\u2026": "...",  # horizontal ellipsis
        "\u00a0": " ",  # no-break space
        "\u2002": " ",  # en space
        "\u2003": " ",  # em space
        "\u2009": " ",  # thin space
        "\u202f": " ",  # narrow no-break space
        "\u200b": "",  # zero width space
        "\t": " ",
    }
)


@cache
def gsm7_septets(character: str) -> int | None:
    """Septets `character` takes in GSM-7 (1, or 2 from the extension table); None if none."""
    try:
        return len(character.encode("gsm03.38"))
    except UnicodeEncodeError:
        return None


def is_gsm7(text: str) -> bool:
    return all(gsm7_septets(character) is not None for character in text)


def detect_encoding(text: str) -> Encoding:
    return "gsm7" if is_gsm7(text) else "ucs2"


def transliterate(text: str) -> str:
    """Typographic punctuation replaced by its GSM look-alike; other characters unchanged."""
    return text.translate(_TRANSLITERATION)


def _unit_cost(character: str, encoding: Encoding) -> int:
    if encoding == "ucs2":
        return 2 if ord(character) > 0xFFFF else 1
    septets = gsm7_septets(character)
    assert septets is not None  # the encoding was chosen because every character has one
    return septets


@dataclass(frozen=True)
class SegmentedText:
    """A text as it goes over the air: its encoding, and its parts."""

    text: str
    encoding: Encoding
    parts: tuple[str, ...]
    units: int
    """Septets (GSM-7) or UTF-16 code units (UCS-2) of the whole text."""

    @property
    def count(self) -> int:
        return len(self.parts)


def segment(text: str) -> SegmentedText:
    """`text` split into the parts a concatenated SMS carries (one part when it fits one SMS)."""
    encoding = detect_encoding(text)
    single, per_part = (GSM7_SINGLE, GSM7_PART) if encoding == "gsm7" else (UCS2_SINGLE, UCS2_PART)
    costs = [_unit_cost(character, encoding) for character in text]
    units = sum(costs)
    if units <= single:
        return SegmentedText(text, encoding, (text,), units)
    parts: list[str] = []
    start = used = 0
    for index, cost in enumerate(costs):
        if used + cost > per_part:
            parts.append(text[start:index])
            start, used = index, 0
        used += cost
    parts.append(text[start:])
    return SegmentedText(text, encoding, tuple(parts), units)


def prepare(text: str, *, transliteration: bool) -> SegmentedText:
    """The text to send: transliterated when that (and only that) makes it GSM-7, segmented."""
    if transliteration and not is_gsm7(text):
        candidate = transliterate(text)
        if is_gsm7(candidate):
            text = candidate
    return segment(text)


def concatenation_reference(message_id: str) -> int:
    """An 8-bit concatenation reference, the same for every attempt at one message."""
    return zlib.crc32(message_id.encode()) & 0xFF


def concatenation_udh(reference: int, total: int, sequence: int) -> bytes:
    """The user data header of part `sequence` (1-based) of `total`: 8-bit reference IE 0x00."""
    if not (0 <= reference <= 0xFF and 1 <= sequence <= total <= 0xFF):
        raise ValueError(f"bad concatenation: reference {reference}, part {sequence}/{total}")
    return bytes((0x05, 0x00, 0x03, reference, total, sequence))
