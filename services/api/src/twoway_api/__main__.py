from __future__ import annotations

from twoway.logs import configure_logging
from twoway.service import run_service
from twoway_api.app import create_app
from twoway_api.settings import ApiSettings


def main() -> None:
    settings = ApiSettings()  # api_token comes from the environment: TWOWAY_API_TOKEN
    configure_logging(settings, "api")
    run_service(create_app(settings), settings, settings.port)


if __name__ == "__main__":
    main()
