"""Twoway's example adapter that calls an HTTP back-end (a demo bank)."""
