"""The upstream standards the tests check against, vendored in tests/reference/ (sources and licences are
in its README), so that a clone alone runs every test."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "reference"


def reference(relative: str) -> Path:
    """The path of a reference file; a missing one is an error (the folder is part of the repository)."""
    path = ROOT / relative
    if not path.exists():
        raise FileNotFoundError(f"reference file {relative} is missing from {ROOT}: restore it from git")
    return path
