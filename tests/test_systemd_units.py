"""The systemd units: the template (one instance per container) keeps every hardening setting of the main
unit, and both pass ``systemd-analyze verify``.

``verify`` also checks that ExecStart's program exists. On a developer's machine nothing is installed under
/opt/nsg-forwarder, so the units are verified with that path pointing at the nsg-forwarder of the running
environment instead; CI installs the package where the README says (``.ci/run``) and sets
NSG_FORWARDER_CHECK_INSTALLED_UNITS=1, and then the units are verified exactly as shipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[1] / "systemd"
INSTALLED = "/opt/nsg-forwarder/bin/nsg-forwarder"
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


def _units_to_verify(tmp_path: Path) -> list[Path]:
    shipped = [UNITS / "nsg-forwarder.service", UNITS / "nsg-forwarder@.service"]
    if os.environ.get("NSG_FORWARDER_CHECK_INSTALLED_UNITS") == "1":
        return shipped
    here = Path(sys.prefix) / "bin" / "nsg-forwarder"
    assert here.exists(), f"{here} is missing: install the package into this environment (pip install -e .)"
    copies = []
    for unit in shipped:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(INSTALLED, str(here)))
        copies.append(copy)
    return copies


def test_the_units_verify_without_warnings(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    for unit in _units_to_verify(tmp_path):
        done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stderr


def test_the_documentation_the_units_point_to_is_installed_by_pip() -> None:
    """Documentation= names files the wheel puts under the venv's share/doc (see pyproject.toml)."""
    folders = tomllib.loads((UNITS.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    installed = {f"{folder}/{Path(source).name}" for folder, sources in folders.items() for source in sources}
    for unit in ("nsg-forwarder.service", "nsg-forwarder@.service"):
        for uri in settings(UNITS / unit)["Documentation"]:
            for target in uri.split():
                if not target.startswith("file:"):
                    continue
                path = target.removeprefix("file:")
                assert path.startswith("/opt/nsg-forwarder/share/doc/nsg-forwarder/"), target
                relative = path.removeprefix("/opt/nsg-forwarder/")
                assert relative in installed, f"{relative} is not in the wheel's data-files"
                if os.environ.get("NSG_FORWARDER_CHECK_INSTALLED_UNITS") == "1":
                    assert Path(path).is_file(), f"{path} was not installed"
