"""The upstream standards in ../shared/reference (next to the repository, see DESIGN.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3] / "shared" / "reference"


def reference(relative: str) -> Path:
    """The path of a reference file; skips the test (a failure in CI) when the folder is not there."""
    path = ROOT / relative
    if not path.exists():
        pytest.skip(f"reference data not found at {path}: clone the repository next to shared/")
    return path
