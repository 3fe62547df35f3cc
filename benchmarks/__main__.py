"""`python -m benchmarks [NAME ...]`: run the named benchmarks (all of them by default)."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = ["e2e", "routing", "optouts", "outbound_rate", "conversations", "broadcast"]
"""Module names under benchmarks/, each with a `main()` that prints its figures."""


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"some of {BENCHMARKS} (default: all)")
    names = parser.parse_args().names or BENCHMARKS
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; known: {BENCHMARKS}")
    for name in names:
        print(f"== {name}", flush=True)
        importlib.import_module(f"benchmarks.{name}").main()


if __name__ == "__main__":
    main()
