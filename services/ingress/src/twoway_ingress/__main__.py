from __future__ import annotations

from twoway.logs import configure_logging
from twoway.service import run_service
from twoway_ingress.app import create_app
from twoway_ingress.settings import IngressSettings


def main() -> None:
    settings = IngressSettings()
    configure_logging(settings, "ingress")
    run_service(create_app(settings), settings, settings.port)


if __name__ == "__main__":
    main()
