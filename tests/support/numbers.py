"""The numbers tests text: fictitious ones such as +1 555 0100 and +44 7700 900123 are no valid
numbers to `phonenumbers` (type `unknown`), which a gateway's default destination policy refuses.
Test gateways allow them, as the development configuration does."""

from __future__ import annotations

TEST_DESTINATIONS = "{number_types: [fixed_line_or_mobile, mobile, unknown]}"
"""A gateway's `destinations` (YAML) that let every number the tests text through."""
