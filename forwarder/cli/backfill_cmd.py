"""``nsg-forwarder backfill``: read the hours of a time range once, on purpose, with progress."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from forwarder.checkpoints.store import CheckpointError, CheckpointStore
from forwarder.cli.common import load_or_report
from forwarder.config.build import build_service, checkpoint_path
from forwarder.logsetup import setup_logging
from forwarder.sinks.base import SinkFatal
from forwarder.sources.base import BlobRef, SourceError
from forwarder.sources.start import parse_time

log = logging.getLogger("forwarder.backfill")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
TIME_FORMS = "an RFC 3339 time such as 2026-11-01T00:00:00Z, or a time before now such as 90m, 6h or 2d"


def _time(value: str) -> datetime:
    """--since / --until: an RFC 3339 time with its offset, or a duration before now ("6h")."""
    text = value.strip()
    if text[:-1].isdigit() and text[-1:].lower() in _UNITS:
        return datetime.now(UTC) - int(text[:-1]) * _UNITS[text[-1:].lower()]
    if not text[:4].isdigit() or "-" not in text:
        raise argparse.ArgumentTypeError(f"expected {TIME_FORMS}, got {value!r}")
    try:
        return parse_time(text, "time")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("time: ")) from None


def register(sub: Any) -> None:
    p = sub.add_parser(
        "backfill",
        help="forward the flow logs of a past time range (progress bar on a terminal)",
        description="List only the hour folders in [--since, --until) and forward them through the configured "
        "sinks, sharing the service's checkpoints: what was already delivered is skipped, and the service "
        "will not send it again. Safe to interrupt and run again.",
    )
    p.add_argument("--config", "-c", required=True, type=Path, help="the TOML config file")
    p.add_argument(
        "--since", required=True, type=_time, help=f"start of the range (its hour is included): {TIME_FORMS}"
    )
    p.add_argument("--until", type=_time, help="end of the range, exclusive (default: now); same forms as --since")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    now = datetime.now(UTC)
    if args.since > now:
        print(
            f"nsg-forwarder backfill: --since {args.since.isoformat()} is in the future; nothing to forward yet",
            file=sys.stderr,
        )
        return 2
    until = args.until or now
    if until <= args.since:
        print(
            f"nsg-forwarder backfill: --until {until.isoformat()} must be after --since {args.since.isoformat()}",
            file=sys.stderr,
        )
        return 2
    setup_logging(cfg.get("log", {}).get("level", "info"), cfg.get("log", {}).get("format", "auto"))
    stop = threading.Event()

    def on_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    try:
        store = CheckpointStore.open_exclusive(checkpoint_path(cfg))
        service = build_service(cfg, stop, store)
    except CheckpointError as exc:
        log.error("%s", exc)
        return 1
    source = service.source
    if not hasattr(source, "backlog"):
        print(f"nsg-forwarder backfill: source type {cfg['source']['type']} cannot list by time", file=sys.stderr)
        return 2
    try:
        service.delivery.open()
        shard = service.shard
        blobs: list[BlobRef] = [b for b in source.backlog(args.since, until) if shard is None or shard.owns(b.name)]
        total = sum(b.size for b in blobs)
        log.info(
            "Backfill listed its hours: blobs=%d bytes=%d since=%s until=%s",
            len(blobs),
            total,
            args.since.isoformat(),
            until.isoformat(),
        )
        tty = sys.stderr.isatty()
        bar = tqdm(total=total, unit="B", unit_scale=True, desc="backfill", disable=not tty, file=sys.stderr)
        state = {"done": 0, "bytes": 0, "last": time.monotonic(), "began": time.monotonic()}

        def progress(blob: BlobRef, size: int) -> None:
            state["done"] += 1
            state["bytes"] += size
            bar.update(size)
            # Strings: tqdm shows numbers in its short form, and 90000 events as "9e+4".
            bar.set_postfix(blobs=f"{state['done']}/{len(blobs)}", events=f"{service.stats.events_delivered:,}")
            now = time.monotonic()
            if not tty and (now - state["last"] >= 10 or state["done"] == len(blobs)):
                state["last"] = now
                rate = state["bytes"] / max(now - state["began"], 1e-9)
                eta = (total - state["bytes"]) / rate if rate else 0
                log.info(
                    "Backfill progress: blobs=%d/%d bytes=%d/%d events=%d eta_s=%.0f",
                    state["done"],
                    len(blobs),
                    state["bytes"],
                    total,
                    service.stats.events_delivered,
                    eta,
                )

        # Log lines go above the bar instead of through it.
        with logging_redirect_tqdm():
            service.backfill(blobs, progress)
        # Blobs are reported as they are read, events once every sink confirmed them: show the final count.
        bar.set_postfix(blobs=f"{state['done']}/{len(blobs)}", events=f"{service.stats.events_delivered:,}")
        bar.close()
    except (SinkFatal, SourceError, CheckpointError) as exc:
        log.error("Backfill stopped: %s", exc)
        return 1
    finally:
        service.delivery.close()
        source.close()
    log.info(
        "Backfill finished: blobs=%d events=%d interrupted=%s %s",
        len(blobs),
        service.stats.events_delivered,
        stop.is_set(),
        service.issues.summary(),
    )
    return 130 if stop.is_set() else 0
