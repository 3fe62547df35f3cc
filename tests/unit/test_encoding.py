"""SMS encoding and segmentation: GSM-7 and its extension table, UCS-2, part boundaries."""

from __future__ import annotations

import pytest

from twoway.gateways.encoding import (
    concatenation_reference,
    concatenation_udh,
    detect_encoding,
    prepare,
    segment,
    transliterate,
)

EMOJI = "\U0001f600"  # two UTF-16 code units

SEGMENT_CASES = (
    # id, text, encoding, units, part lengths (in characters)
    ("empty", "", "gsm7", 0, [0]),
    ("plain", "Your balance is 12.00", "gsm7", 21, [21]),
    ("gsm-specials", "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¡ÄÖÑÜ§¿äöñüà", "gsm7", 41, [41]),
    ("extension-chars-count-two", "^{}\\[~]|€", "gsm7", 18, [9]),
    ("gsm-160-one-part", "a" * 160, "gsm7", 160, [160]),
    ("gsm-161-two-parts", "a" * 161, "gsm7", 161, [153, 8]),
    ("gsm-153x2", "a" * 306, "gsm7", 306, [153, 153]),
    ("gsm-153x3", "a" * 459, "gsm7", 459, [153, 153, 153]),
    ("gsm-153x3-plus-one", "a" * 460, "gsm7", 460, [153, 153, 153, 1]),
    ("gsm-159-plus-euro-fits", "a" * 158 + "€", "gsm7", 160, [159]),
    ("gsm-159-plus-euro-161", "a" * 159 + "€", "gsm7", 161, [153, 7]),
    ("escape-never-split", "a" * 152 + "€" + "b" * 10, "gsm7", 164, [152, 11]),
    ("ucs2-one-char", "Привет", "ucs2", 6, [6]),
    ("ucs2-70-one-part", "ж" * 70, "ucs2", 70, [70]),
    ("ucs2-71-two-parts", "ж" * 71, "ucs2", 71, [67, 4]),
    ("ucs2-67x3", "ж" * 201, "ucs2", 201, [67, 67, 67]),
    ("emoji-makes-ucs2", "hi " + EMOJI, "ucs2", 5, [4]),
    ("emoji-counts-two-units", EMOJI * 35, "ucs2", 70, [35]),
    ("emoji-36-two-parts", EMOJI * 36, "ucs2", 72, [33, 3]),
    ("surrogate-pair-never-split", "a" * 66 + EMOJI + "b" * 5, "ucs2", 73, [66, 6]),
    ("one-smart-quote-makes-ucs2", "it\u2019s" + "a" * 100, "ucs2", 104, [67, 37]),
    ("lowercase-c-cedilla-is-not-gsm", "ç", "ucs2", 1, [1]),
)


@pytest.mark.parametrize(
    ("text", "encoding", "units", "lengths"),
    [case[1:] for case in SEGMENT_CASES],
    ids=[case[0] for case in SEGMENT_CASES],
)
def test_segment(text: str, encoding: str, units: int, lengths: list[int]) -> None:
    result = segment(text)
    assert result.encoding == encoding
    assert detect_encoding(text) == encoding
    assert result.units == units
    assert [len(part) for part in result.parts] == lengths
    assert result.count == len(lengths)
    assert "".join(result.parts) == text


TRANSLITERATE_CASES = (
    ("smart-single-quotes", "\u2018it\u2019s\u2019", "'it's'"),
    ("smart-double-quotes", "\u201cquoted\u201d \u201elow\u201f", '"quoted" "low"'),
    ("guillemets", "\u00abhi\u00bb", '"hi"'),
    ("dashes", "a\u2013b\u2014c\u2212d\u2010e", "a-b-c-d-e"),
    ("ellipsis", "wait\u2026", "wait..."),
    ("odd-spaces", "a\u00a0b\u2009c\tdz\u200b", "a b c dz"),
    ("gsm-untouched", "Ünïcödé? no: Üñ", "Ünïcödé? no: Üñ"),
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [case[1:] for case in TRANSLITERATE_CASES],
    ids=[case[0] for case in TRANSLITERATE_CASES],
)
def test_transliterate(text: str, expected: str) -> None:
    assert transliterate(text) == expected


PREPARE_CASES = (
    ("off-keeps-ucs2", "it\u2019s " + "a" * 150, False, "ucs2", 3),
    ("on-makes-gsm", "it\u2019s " + "a" * 150, True, "gsm7", 1),
    ("on-but-emoji-stays-original", "it\u2019s " + EMOJI, True, "ucs2", 1),
    ("on-gsm-text-unchanged", "plain", True, "gsm7", 1),
)


@pytest.mark.parametrize(
    ("text", "transliteration", "encoding", "count"),
    [case[1:] for case in PREPARE_CASES],
    ids=[case[0] for case in PREPARE_CASES],
)
def test_prepare(text: str, transliteration: bool, encoding: str, count: int) -> None:
    result = prepare(text, transliteration=transliteration)
    assert (result.encoding, result.count) == (encoding, count)
    if encoding == "ucs2":
        assert result.text == text  # never a half-transliterated text


def test_concatenation_udh() -> None:
    assert concatenation_udh(0x42, 3, 2) == bytes.fromhex("050003420302")


@pytest.mark.parametrize(
    ("reference", "total", "sequence"),
    [(256, 2, 1), (-1, 2, 1), (1, 2, 0), (1, 2, 3), (1, 256, 1)],
    ids=["reference-too-big", "reference-negative", "part-zero", "part-past-total", "too-many"],
)
def test_concatenation_udh_refuses_bad_values(reference: int, total: int, sequence: int) -> None:
    with pytest.raises(ValueError, match="bad concatenation"):
        concatenation_udh(reference, total, sequence)


def test_concatenation_reference_is_stable_per_message() -> None:
    first = concatenation_reference("01JDQ6R5Z8X0M4N3K2P1Q0R9S8")
    assert first == concatenation_reference("01JDQ6R5Z8X0M4N3K2P1Q0R9S8")
    assert 0 <= first <= 255
