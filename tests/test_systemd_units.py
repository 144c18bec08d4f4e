"""The template unit (one instance per container) keeps every hardening setting of the main unit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[1] / "systemd"
# What an instance changes: its name, its config and environment files, its state and log folders.
PER_INSTANCE = {"Description", "EnvironmentFile", "ExecStartPre", "ExecStart", "StateDirectory", "LogsDirectory"}


def settings(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_the_template_differs_from_the_main_unit_only_per_instance() -> None:
    main = settings(UNITS / "nsg-forwarder.service")
    template = settings(UNITS / "nsg-forwarder@.service")
    assert set(main) == set(template)
    differ = {key for key in main if main[key] != template[key]}
    assert differ == PER_INSTANCE
    for key in PER_INSTANCE - {"EnvironmentFile"}:
        assert all("%i" in value for value in template[key]), key
    assert "/etc/nsg-forwarder/%i.toml" in template["ExecStart"][0]
    assert template["EnvironmentFile"] == [*main["EnvironmentFile"], "-/etc/default/nsg-forwarder-%i"]


def test_the_units_verify_without_warnings() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    for unit in ("nsg-forwarder.service", "nsg-forwarder@.service"):
        done = subprocess.run(
            ["systemd-analyze", "verify", str(UNITS / unit)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stderr
