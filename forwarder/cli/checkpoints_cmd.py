"""``nsg-forwarder checkpoints show|reset``: inspect or reset where each blob will be read from."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from forwarder.checkpoints.store import BlobCheckpoint, CheckpointCorrupt, CheckpointError, CheckpointStore, hour_text
from forwarder.cli.common import load_or_report
from forwarder.config.build import checkpoint_path
from forwarder.sources.blobpath import LAYOUT_ROOTS

CONTAINER_FOLDER = "insights-logs-"  # a directory source with container folders keeps them in blob names
LEGEND = (
    "state: complete = read to the closing ]} at that size; open = delivered up to offset, the rest is read when "
    "the blob grows (no closing ]} seen yet, or the service is reading it); not-a-flow-log = skipped until it changes"
)

_PREFIX_HELP = (
    "only blobs whose name starts with this, e.g. resourceId=/SUBSCRIPTIONS/<id>/RESOURCEGROUPS/<rg>/ "
    "(with or without the leading <account>/<container>/ of the keys)"
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "checkpoints",
        help="show or reset the per-blob checkpoints",
        description="Show the delivered byte offset of every blob, or reset checkpoints so blobs are read again "
        "(deterministic event ids let Elasticsearch and any SIEM drop the replayed duplicates).",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show",
        help="list blobs with offset, size, delivered events and state",
        description="List every blob in the checkpoint file: the byte offset delivered to every sink, the size "
        f"it had when read to its end, the events delivered from it and its state. {LEGEND}.",
    )
    show.add_argument("--config", "-c", required=True, type=Path, help="the TOML config file")
    show.add_argument("--prefix", default="", help=_PREFIX_HELP)
    show.set_defaults(handler=_show)
    reset = actions.add_parser(
        "reset",
        help="forget checkpoints (all, or those matching --prefix); a corrupt file is moved aside",
        description="Forget checkpoints so that the next run reads those blobs again from the configured start. "
        "A corrupt checkpoint file is renamed to <file>.corrupt-<time> rather than deleted. Asks for confirmation "
        "on a terminal; without a terminal (ssh without -t, cron, a pipe) it needs --yes.",
    )
    reset.add_argument("--config", "-c", required=True, type=Path, help="the TOML config file")
    reset.add_argument("--prefix", default="", help=_PREFIX_HELP + " (default: all)")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation (needed without a terminal)")
    reset.set_defaults(handler=_reset)


def matches(key: str, prefix: str) -> bool:
    """Whether a checkpoint key ("<account>/<container>/<blob name>") is selected by ``prefix``: a prefix of
    the whole key, or of the blob name within it, so that users need not know how the key starts."""
    if key.startswith(prefix):
        return True
    starts = [key.find(root) for root in (*LAYOUT_ROOTS, CONTAINER_FOLDER)]
    return any(at > 0 and key[at:].startswith(prefix) for at in starts)


def state_of(cp: BlobCheckpoint) -> str:
    if cp.etag and not cp.head:
        return "not-a-flow-log"  # reported once; remembered by etag so it is not reported on every poll
    return "complete" if cp.etag else "open"


def _path(args: argparse.Namespace) -> Path | None:
    cfg = load_or_report(args.config)
    return None if cfg is None else checkpoint_path(cfg)


def _show(args: argparse.Namespace) -> int:
    path = _path(args)
    if path is None:
        return 2
    if not path.exists():
        print(f"No checkpoint file at {path} yet: nothing has been delivered with this config.")
        return 0
    try:
        store = CheckpointStore.load(path)
    except CheckpointError as exc:
        print(f"nsg-forwarder: {exc}", file=sys.stderr)
        return 1
    everything = store.items()
    rows = [(k, cp) for k, cp in everything if matches(k, args.prefix)]
    scope = f" matching {args.prefix!r}" if args.prefix else ""
    print(f"{len(rows)} blobs{scope} in {path} ({len(everything)} in all)")
    if store.horizon:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(store.horizon))
        print(f"Blobs of hours before {when} were read to the end and forgotten ([checkpoint] retain_days).")
    if store.settled:
        hours = sorted(store.settled)
        print(
            f"{len(hours)} hours settled, {hour_text(hours[0])} to {hour_text(hours[-1])}: every blob of them was read "
            "to its end and is kept as one record per hour (a blob changed after that is read again)."
        )
    if args.prefix and not rows and everything:
        print(f"No key starts with {args.prefix!r}; keys look like: {everything[0][0]}", file=sys.stderr)
    if rows:
        print(LEGEND)
    for key, cp in rows:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cp.updated)) if cp.updated else "-"
        size = cp.size if cp.etag else "-"
        print(f"{key}\toffset={cp.offset}\tsize={size}\tevents={cp.events}\t{state_of(cp)}\tupdated={when}")
    return 0


def _reset(args: argparse.Namespace) -> int:
    path = _path(args)
    if path is None:
        return 2
    scope = f"blobs starting with {args.prefix!r}" if args.prefix else "ALL blobs"
    if not args.yes:
        if not sys.stdin.isatty():
            print(
                f"nsg-forwarder checkpoints reset: refusing without --yes, since there is no terminal to ask on: "
                f"this forgets the checkpoints of {scope} in {path}, and those blobs are sent again. Nothing changed.",
                file=sys.stderr,
            )
            return 2
        answer = input(f"Forget checkpoints of {scope} in {path}? Those blobs will be sent again. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing changed.")
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
    everything = store.items()
    keys = [k for k, _ in everything if matches(k, args.prefix)]
    if args.prefix and not keys:
        example = f"; keys look like: {everything[0][0]}" if everything else ""
        print(f"No checkpoint matches {args.prefix!r} in {path}: nothing changed{example}")
        return 0
    for k in keys:
        store.remove(k)
    settled = len(store.settled)
    if not args.prefix:
        store.settled.clear()
    elif settled:
        print(
            f"{settled} settled hours are kept: they have no per-blob checkpoints to match {args.prefix!r}. "
            "Reset without --prefix to send them again."
        )
    try:
        store.save(force=True)
    except CheckpointError as exc:
        print(f"nsg-forwarder: {exc}", file=sys.stderr)
        return 1
    print(
        f"Forgot {len(keys)} checkpoints"
        + (f" and {settled} settled hours" if settled and not args.prefix else "")
        + f" in {path}."
    )
    return 0
