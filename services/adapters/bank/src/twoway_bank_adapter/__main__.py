from __future__ import annotations

from twoway_bank_adapter.adapter import BankSettings, adapter


def main() -> None:
    adapter.main(BankSettings())


if __name__ == "__main__":
    main()
