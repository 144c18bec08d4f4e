"""``nsg-forwarder checkpoints show|reset``: inspect or reset where each blob will be read from."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from forwarder.checkpoints.store import CheckpointCorrupt, CheckpointError, CheckpointStore
from forwarder.cli.common import load_or_report
from forwarder.config.build import checkpoint_path


def register(sub: Any) -> None:
    p = sub.add_parser(
        "checkpoints",
        help="show or reset the per-blob checkpoints",
        description="Show the delivered byte offset of every blob, or reset checkpoints so blobs are read again "
        "(deterministic event ids let Elasticsearch and any SIEM drop the replayed duplicates).",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="list blobs with offset, size and delivered events")
    show.add_argument("--config", "-c", required=True, type=Path)
    show.add_argument("--prefix", default="", help="only blobs whose key starts with this")
    show.set_defaults(handler=_show)
    reset = actions.add_parser(
        "reset",
        help="forget checkpoints (all, or those matching --prefix); a corrupt file is moved aside",
        description="Forget checkpoints so that the next run reads those blobs again from the configured start. "
        "A corrupt checkpoint file is renamed to <file>.corrupt-<time> rather than deleted.",
    )
    reset.add_argument("--config", "-c", required=True, type=Path)
    reset.add_argument("--prefix", default="", help="only blobs whose key starts with this (default: all)")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(handler=_reset)


def _path(args: argparse.Namespace) -> Path | None:
    cfg = load_or_report(args.config)
    return None if cfg is None else checkpoint_path(cfg)


def _show(args: argparse.Namespace) -> int:
    path = _path(args)
    if path is None:
        return 2
    try:
        store = CheckpointStore.load(path)
    except CheckpointError as exc:
        print(f"nsg-forwarder: {exc}", file=sys.stderr)
        return 1
    rows = [(k, cp) for k, cp in store.items() if k.startswith(args.prefix)]
    print(f"{len(rows)} blobs in {path}")
    for key, cp in rows:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cp.updated)) if cp.updated else "-"
        state = "complete" if cp.etag else "reading"
        print(f"{key}\toffset={cp.offset}\tsize={cp.size}\tevents={cp.events}\t{state}\tupdated={when}")
    return 0


def _reset(args: argparse.Namespace) -> int:
    path = _path(args)
    if path is None:
        return 2
    if not args.yes and sys.stdin.isatty():
        scope = f"blobs starting with {args.prefix!r}" if args.prefix else "ALL blobs"
        if input(f"Forget checkpoints of {scope} in {path}? Those blobs will be sent again. [y/N] ").lower() != "y":
            return 1
    try:
        store = CheckpointStore.open_exclusive(path)
    except CheckpointCorrupt:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        path.rename(aside)
        print(f"Moved the unreadable checkpoint file aside to {aside}; the next run starts from [source] start.")
        return 0
    except CheckpointError as exc:  # in use by another process, or unreadable
        print(f"nsg-forwarder: {exc}", file=sys.stderr)
        return 1
    keys = [k for k, _ in store.items() if k.startswith(args.prefix)]
    for k in keys:
        store.remove(k)
    try:
        store.save(force=True)
    except CheckpointError as exc:
        print(f"nsg-forwarder: {exc}", file=sys.stderr)
        return 1
    print(f"Forgot {len(keys)} checkpoints in {path}.")
    return 0
