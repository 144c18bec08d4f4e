"""Whether this process could read or write a path, found without creating or changing anything."""

from __future__ import annotations

import os
from pathlib import Path


def cannot_read(path: Path) -> str:
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_file():
        return f"{path} is not a file"
    if not os.access(path, os.R_OK):
        return f"{path} cannot be read by this user"
    return ""


def cannot_write(path: Path) -> str:
    """Why the forwarder could not create or replace ``path`` (it also needs to create files beside it:
    temporary files, locks, rotated files), or "" if it can. Creates nothing."""
    if path.is_dir():
        return f"{path} is a folder; name a file in it"
    folder = path.parent
    if folder.is_dir():
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"cannot create files in {folder} (no write permission for this user)"
        if path.exists() and not os.access(path, os.W_OK):
            return f"{path} is not writable by this user"
        return ""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot create the folder {folder}: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot create the folder {folder}: no write permission in {existing} for this user"
    return ""
