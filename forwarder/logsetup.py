"""Logging: readable lines on a terminal, one JSON object per line under journald or in a container."""

from __future__ import annotations

import logging
import os
import sys
import time

import orjson

_STD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def choose_format(requested: str) -> str:
    if requested != "auto":
        return requested
    if sys.stderr.isatty():
        return "text"
    # systemd sets JOURNAL_STREAM; podman and systemd-nspawn set "container"; Docker leaves /.dockerenv.
    in_container = os.environ.get("container") or os.path.exists("/.dockerenv")  # noqa: SIM112
    if os.environ.get("JOURNAL_STREAM") or in_container:
        return "json"
    return "text"


def setup_logging(level: str = "info", fmt: str = "auto") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if choose_format(fmt) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The Azure SDK logs every HTTP request (with URLs) at INFO: keep it to warnings.
    logging.getLogger("azure").setLevel(logging.WARNING)
    # urllib3 logs request lines at DEBUG, query strings (which can carry credentials) included.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
