"""What several commands share: loading the config and saying clearly what is wrong with it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from forwarder.config.loader import ConfigError, load_config


def config_error(message: object) -> None:
    print(f"nsg-forwarder: configuration error: {message}", file=sys.stderr)


def load_or_report(path: Path) -> dict[str, Any] | None:
    """The validated config, or None after printing the error (the caller exits 2)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        config_error(exc)
        return None
