from __future__ import annotations

from twoway.logs import configure_logging
from twoway.service import run_service
from twoway_outbound.app import create_app
from twoway_outbound.settings import OutboundSettings


def main() -> None:
    settings = OutboundSettings()
    configure_logging(settings, "outbound")
    run_service(create_app(settings), settings, settings.port)


if __name__ == "__main__":
    main()
