"""Output formats. Each module exposes a Formatter; ``formatter(name)`` picks one by name."""

from __future__ import annotations

from importlib import import_module

from forwarder.formats.base import Formatter

FORMATS = ("ecs", "cef", "ocsf", "asim")


def formatter(name: str) -> Formatter:
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r} (expected one of: {', '.join(FORMATS)})")
    module = import_module(f"forwarder.formats.{name}")
    made: Formatter = module.make_formatter()
    return made
