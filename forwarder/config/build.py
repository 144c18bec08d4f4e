"""Turn a validated config into the running parts: source, checkpoint store, sinks, service."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

from forwarder.checkpoints.store import CheckpointStore
from forwarder.config.checks import checkpoint_file, dead_letter_file
from forwarder.config.units import parse_size
from forwarder.flowlog.issues import IssueLog
from forwarder.pipeline.delivery import Delivery
from forwarder.pipeline.service import DEFAULT_CONCURRENCY, DEFAULT_MAX_BYTES_IN_FLIGHT, Service
from forwarder.pipeline.shard import Shard
from forwarder.reduce.config import reductions, sink_table
from forwarder.sinks.base import Sink
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.retry import RetryPolicy
from forwarder.sources import blobpath
from forwarder.sources.base import BlobSource

SINK_MODULES = {
    "file": "forwarder.sinks.file",
    "syslog": "forwarder.sinks.syslog",
    "splunk_hec": "forwarder.sinks.splunk_hec",
    "elasticsearch": "forwarder.sinks.elasticsearch",
    "http": "forwarder.sinks.http",
    "azure_monitor": "forwarder.sinks.azure_monitor",
}
SOURCE_MODULES = {"directory": "forwarder.sources.directory", "azure_blob": "forwarder.sources.azure_blob"}


def checkpoint_path(cfg: Mapping[str, Any]) -> Path:
    return checkpoint_file(cfg)


def build_source(cfg: Mapping[str, Any], stop: threading.Event | None = None) -> BlobSource:
    module = import_module(SOURCE_MODULES[cfg["source"]["type"]])
    if cfg["source"]["type"] == "azure_blob":
        readers = int(cfg.get("reader", {}).get("concurrency", DEFAULT_CONCURRENCY))
        azure: BlobSource = module.from_config(cfg["source"], stop=stop, readers=readers)
        return azure
    source: BlobSource = module.from_config(cfg["source"])
    return source


def resume_hour(store: CheckpointStore) -> datetime | None:
    """Where a restarted service can begin listing instead of [source] start: the oldest blob still being
    read, or else the newest blob seen (its hour and the ones after it are listed again)."""
    hours_open, hours_all = [], []
    for key, cp in store.items():
        hour = blobpath.hour_in_key(key)
        if hour is None:
            continue
        hours_all.append(hour)
        if not cp.etag:
            hours_open.append(hour)
    if hours_open:
        return min(hours_open)
    settled = store.newest_hour()
    if settled is not None:
        hours_all.append(datetime.fromtimestamp(settled, UTC))
    return max(hours_all) if hours_all else None


NAMES_BY_CONTENT = frozenset({"elasticsearch", "splunk_hec"})


def sink_names(cfg: Mapping[str, Any]) -> list[str]:
    return [s.get("name") or f"{s['type']}[{i}]" for i, s in enumerate(cfg["sink"])]


def build_sinks(cfg: Mapping[str, Any], dead_letter: DeadLetter, retry: RetryPolicy) -> list[Sink]:
    sinks = []
    for name, sink_cfg in zip(sink_names(cfg), cfg["sink"], strict=True):
        module = import_module(SINK_MODULES[sink_cfg["type"]])
        # Sinks whose defaults name what they store (data stream, sourcetype) are told they store aggregates.
        extra = {"aggregated": True} if "aggregate" in sink_cfg and sink_cfg["type"] in NAMES_BY_CONTENT else {}
        sinks.append(module.from_config(sink_table(sink_cfg), name, dead_letter, retry, **extra))
    return sinks


def build_service(
    cfg: Mapping[str, Any], stop: threading.Event, store: CheckpointStore, abort: threading.Event | None = None
) -> Service:
    dl_path = dead_letter_file(cfg)
    retry_cfg = cfg.get("retry", {})
    retry = RetryPolicy(
        initial=float(retry_cfg.get("initial", 0.5)),
        maximum=float(retry_cfg.get("maximum", 60.0)),
        max_attempts=int(retry_cfg.get("max_attempts", 0)),
        stop=abort or stop,
    )
    source = build_source(cfg, abort or stop)
    resume = resume_hour(store)
    configured = getattr(source, "start", None)
    if (
        resume is not None
        and hasattr(source, "start")
        and (not isinstance(configured, datetime) or resume > configured)
    ):
        # Restarted with checkpoints: no need to list the whole backlog from [source] start again.
        source.start = resume - timedelta(hours=1)
    dead_letter = DeadLetter(dl_path)
    delivery = Delivery(build_sinks(cfg, dead_letter, retry), dead_letter, reductions=reductions(cfg))
    retry.on_retry = delivery.count_retry
    reader = cfg.get("reader", {})
    return Service(
        source,
        store,
        delivery,
        start=str(cfg["source"].get("start", "earliest")),
        poll_interval=float(cfg["source"].get("poll_interval", 30)),
        chunk_bytes=int(reader.get("chunk_bytes", 1 << 20)),
        concurrency=int(reader.get("concurrency", DEFAULT_CONCURRENCY)),
        max_bytes_in_flight=parse_size(
            reader.get("max_bytes_in_flight", DEFAULT_MAX_BYTES_IN_FLIGHT), "reader.max_bytes_in_flight"
        ),
        abort=abort,
        checkpoint_interval=float(cfg.get("checkpoint", {}).get("interval", 0.0)),
        retain_days=float(cfg.get("checkpoint", {}).get("retain_days", 14)),
        stop=stop,
        issues=IssueLog(),
        shard=Shard.parse(cfg.get("service", {}).get("shard")),
    )
