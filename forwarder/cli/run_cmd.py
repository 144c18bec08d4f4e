"""``nsg-forwarder run``: the service (or one pass with ``--once``)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from forwarder.checkpoints.store import CheckpointError, CheckpointStore
from forwarder.cli.common import config_error, load_or_report
from forwarder.config.build import build_service, checkpoint_path, sink_names
from forwarder.config.loader import ConfigError, world_readable_secret
from forwarder.flowlog.core import DESCRIPTION as CORE_DESCRIPTION
from forwarder.logsetup import setup_logging
from forwarder.ops.metrics import HealthServer, MetricsListenError
from forwarder.ops.notify import Notifier
from forwarder.pipeline.service import Service
from forwarder.sinks.base import SinkFatal
from forwarder.sources.base import SourceError

log = logging.getLogger("forwarder.run")
PROGRESS_EVERY = 60.0  # seconds between progress lines in the log


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the forwarder (polls until SIGTERM, or drains once with --once)",
        description="Read new flow-log data from the configured source, deliver it to every sink, and advance "
        "the per-blob checkpoints only past what every sink confirmed. SIGTERM/SIGINT: stop reading, finish "
        "in-flight delivery within [service] shutdown_grace seconds, save checkpoints, exit 0 (a second signal "
        "exits at once; the checkpoint file is never left torn). SIGHUP: reopen output files.",
    )
    p.add_argument("--config", "-c", required=True, type=Path, help="the TOML config file")
    p.add_argument("--once", action="store_true", help="deliver everything available now, save checkpoints, exit 0")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    log_cfg = cfg.get("log", {})
    setup_logging(log_cfg.get("level", "info"), log_cfg.get("format", "auto"))
    if world_readable_secret(args.config, cfg):
        log.warning("The config file holds a secret and other users can read it: path=%s", args.config)
    stop = threading.Event()
    abort = threading.Event()
    grace = float(cfg.get("service", {}).get("shutdown_grace", 10))
    try:
        store = CheckpointStore.open_exclusive(checkpoint_path(cfg))
        service = build_service(cfg, stop, store, abort=abort)
    except CheckpointError as exc:
        log.error("%s", exc)
        return 1
    except (ConfigError, ValueError) as exc:
        config_error(f"{args.config}: {exc}")
        return 2
    signals = {"count": 0}

    def on_stop(signum: int, frame: FrameType | None) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            # The checkpoint file is only ever replaced by rename, so leaving now cannot tear it.
            os._exit(1)
        log.info(
            "Stopping: finishing in-flight delivery, then saving checkpoints: signal=%s grace_s=%.0f",
            signal.Signals(signum).name,
            grace,
        )
        stop.set()
        notifier.stopping()
        timer = threading.Timer(grace, abort.set)
        timer.daemon = True
        timer.start()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        log.info("Reopening output files (SIGHUP)")
        service.reopen()

    notifier = Notifier()
    health: HealthServer | None = None
    listen = cfg.get("metrics", {}).get("listen", "")

    progress = {"at": 0.0, "events": 0}

    def on_poll(svc: Service) -> None:
        if not signals.get("ready"):
            signals["ready"] = 1
            notifier.ready(f"Forwarding from {svc.source.identity}")
        s = svc.stats
        lag = f"{time.time() - s.newest_flow_ms / 1000:.0f}s" if s.newest_flow_ms else "-"
        behind = f" FALLING BEHIND: polls take {s.last_poll_seconds:.0f}s" if svc.behind else ""
        notifier.status(f"Forwarding: polls={s.polls} events={s.events_delivered} lag={lag}{behind}")
        # A line in the log now and then, so that a container's or terminal's log shows the work going on.
        now = time.monotonic()
        if s.events_delivered != progress["events"] and (not progress["at"] or now - progress["at"] >= PROGRESS_EVERY):
            log.info(
                "Forwarding: events=%d new_events=%d polls=%d poll_s=%.1f blobs_last_poll=%d lag=%s "
                "bytes_downloaded=%d%s",
                s.events_delivered,
                s.events_delivered - progress["events"],
                s.polls,
                s.last_poll_seconds,
                s.last_poll_blobs,
                lag,
                svc.reader.bytes_read,
                " falling_behind=yes advice='raise [reader] concurrency or add shards'" if svc.behind else "",
            )
            progress.update(at=now, events=s.events_delivered)

    service.on_poll = on_poll
    if notifier.watchdog_interval:

        def watchdog() -> None:
            stale_after = max(60.0, 4 * service.poll_interval)
            while not abort.wait(notifier.watchdog_interval):
                if time.monotonic() - service.last_alive < stale_after:
                    notifier.watchdog()

        threading.Thread(target=watchdog, name="watchdog", daemon=True).start()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    try:
        service.delivery.open()
        if listen:
            health = HealthServer(service, listen, stale_after=max(60.0, 4 * service.poll_interval))
            health.start()
        log.info(
            "Forwarder started: source=%s sinks=%s once=%s checkpoints=%s shard=%s core=%s",
            service.source.identity,
            ",".join(sink_names(cfg)),
            args.once,
            store.path,
            service.shard or "all",
            CORE_DESCRIPTION,
        )
        service.run(once=args.once)
    except SinkFatal as exc:
        log.error("A sink failed in a way retrying cannot fix; stopping: %s", exc)
        return 1
    except SourceError as exc:
        log.error("The source failed in a way retrying cannot fix; stopping: %s", exc)
        return 1
    except CheckpointError as exc:
        log.error("Stopping without saving the latest positions (the next start sends them again): %s", exc)
        return 1
    except MetricsListenError as exc:
        log.error("Cannot serve metrics and health checks; stopping: %s", exc)
        return 2
    finally:
        abort.set()
        if health:
            health.stop()
        service.close()
        service.source.close()
    s = service.stats
    log.info(
        "Forwarder stopped: polls=%d events=%d bytes_downloaded=%d %s",
        s.polls,
        s.events_delivered,
        service.reader.bytes_read,
        service.issues.summary(),
    )
    return 0
