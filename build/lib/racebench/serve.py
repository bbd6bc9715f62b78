"""`racebench serve`: the reference service under uvicorn, N worker processes."""

from __future__ import annotations

import os

import uvicorn

from racebench.console import console as make_console
from racebench.harness.database import render, server
from racebench.reference_service.config import Settings
from racebench.reference_service.strategies import get_strategy

console = make_console()


def serve(*, strategy: str, host: str, port: int, workers: int, database_url: str | None) -> None:
    get_strategy(strategy)  # an unknown name fails here, with the list of valid ones
    with server(database_url) as (url, embedded):
        os.environ["DATABASE_URL"] = render(url)
        os.environ["RACEBENCH_LOCK_STRATEGY"] = strategy
        settings = Settings()
        console.print(
            f"racebench serve: strategy [bold]{strategy}[/], "
            f"http://{host}:{port}, {workers} worker(s)\n"
            f"  database      {url.render_as_string(hide_password=True)}"
            f"{' (embedded)' if embedded else ''}\n"
            f"  RAZORPAY_KEY_ID={settings.razorpay_key_id}\n"
            f"  RAZORPAY_KEY_SECRET={settings.razorpay_key_secret}\n"
            f"  RAZORPAY_WEBHOOK_SECRET={settings.razorpay_webhook_secret}",
            highlight=False,
            soft_wrap=True,
        )
        uvicorn.run(
            "racebench.reference_service.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            log_level="warning",
        )
