"""``nsg-forwarder verify-archive DIR``: check a file sink's archive against its SHA-256 manifest."""

from __future__ import annotations

import argparse
from typing import Any

from forwarder.sinks.file_archive import main_verify


def register(sub: Any) -> None:
    p = sub.add_parser(
        "verify-archive",
        help="check a file sink's closed files against MANIFEST.sha256 (exit 0 = intact)",
        description="Check a file sink's archive directory against its MANIFEST.sha256: every listed file "
        "present with the recorded SHA-256, and no closed file left out of the manifest. Exit 0 if intact, 1 if not.",
    )
    p.add_argument("directory", help="the folder holding the closed files and MANIFEST.sha256")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return main_verify([args.directory])
