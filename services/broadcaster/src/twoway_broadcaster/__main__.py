from __future__ import annotations

from twoway.logs import configure_logging
from twoway.service import run_service
from twoway_broadcaster.app import create_app
from twoway_broadcaster.settings import BroadcasterSettings


def main() -> None:
    settings = BroadcasterSettings()
    configure_logging(settings, "broadcaster")
    run_service(create_app(settings), settings, settings.port)


if __name__ == "__main__":
    main()
