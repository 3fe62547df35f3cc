from __future__ import annotations

from twoway_echo.adapter import adapter


def main() -> None:
    adapter.main()


if __name__ == "__main__":
    main()
