"""Relative paths in a config are relative to the config file's folder, not to wherever a command runs.

Otherwise the same config reads other folders (and, for a directory source, gives other event ids,
which include the folder's name) depending on the shell's current directory, systemd's, or cron's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

STDOUT = "-"  # a file sink's path for standard output


def is_path_key(key: str) -> bool:
    """``path`` (source, checkpoint, dead_letter, file sink) and every ``*_file`` (secrets, TLS material)."""
    return key == "path" or key.endswith("_file")


def resolve_relative(doc: dict[str, Any], base: Path) -> None:
    """Make every relative path in ``doc`` absolute against ``base`` (the config file's folder), in place.

    Values that are not strings are left for the schema to refuse; ``~`` is left for the shell's meaning.
    """
    base = base.absolute()
    for key, value in doc.items():
        if key == "headers":
            continue  # an http sink's header names are the receiver's, not ours
        if isinstance(value, dict):
            resolve_relative(value, base)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    resolve_relative(item, base)
        elif is_path_key(key) and isinstance(value, str) and _relative(value):
            doc[key] = os.path.normpath(base / value)


def _relative(value: str) -> bool:
    return value not in ("", STDOUT) and not value.startswith("~") and not os.path.isabs(value)
