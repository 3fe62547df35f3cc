from __future__ import annotations

from twoway_subscriptions_adapter.adapter import build_adapter
from twoway_subscriptions_adapter.settings import SubscriptionsAdapterSettings


def main() -> None:
    settings = SubscriptionsAdapterSettings()
    build_adapter(settings).main(settings)


if __name__ == "__main__":
    main()
