from __future__ import annotations

from twoway.logs import configure_logging
from twoway.service import run_service
from twoway_router.app import create_app
from twoway_router.settings import RouterSettings


def main() -> None:
    settings = RouterSettings()
    configure_logging(settings, "router")
    run_service(create_app(settings), settings, settings.port)


if __name__ == "__main__":
    main()
