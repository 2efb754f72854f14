"""The app factory uvicorn calls in each worker process (``counterscan serve --workers N``).

Worker processes are started by uvicorn, so they learn their settings from the environment that
``serve`` prepared (COUNTERSCAN_HOME, COUNTERSCAN_DB and the rest, as for any command).
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from counterscan.api import create_app
from counterscan.config import Settings

DELIVER_ENV = "COUNTERSCAN_SERVE_DELIVER_WEBHOOKS"


def from_environment() -> FastAPI:
    return create_app(Settings.load(), deliver_webhooks=os.environ.get(DELIVER_ENV) == "1")
