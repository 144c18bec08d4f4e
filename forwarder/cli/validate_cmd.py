"""``nsg-forwarder validate``: is this config usable here, and (``--connect``) can it reach its endpoints?"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from forwarder.cli.common import config_error, load_or_report
from forwarder.config.build import build_sinks, build_source, checkpoint_path, sink_names
from forwarder.config.checks import environment
from forwarder.config.loader import ConfigError, world_readable_secret
from forwarder.pipeline.shard import Shard
from forwarder.probe import Outcome, probe
from forwarder.reduce.config import reductions
from forwarder.sinks.base import SinkFatal
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.retry import RetryPolicy
from forwarder.sources.base import SourceError


def register(sub: Any) -> None:
    v = sub.add_parser(
        "validate",
        help="check a config (and with --connect, every endpoint) and name the bad key",
        description="Load the config, expand ${VARS}, check it against schemas/config.schema.json, build the "
        "source and sinks, and check what can be known on this machine without connecting: the source folder, "
        "the checkpoint and output folders, the TLS files. Exit 0 if usable, 2 with a message naming the key if "
        "not. With --connect, also reach the storage account and every sink, send no events, and report each "
        "as ok or why not (exit 1 if any cannot be reached).",
    )
    v.add_argument("--config", "-c", required=True, type=Path, help="the TOML config file")
    v.add_argument(
        "--connect",
        action="store_true",
        help="also list one page of the container and reach every sink (HEC health and token, Elasticsearch GET /, "
        "syslog TCP/TLS connect, an empty HTTP request); no events are sent",
    )
    v.set_defaults(handler=validate)


def validate(args: argparse.Namespace) -> int:
    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    try:
        source = build_source(cfg)
        sinks = build_sinks(cfg, DeadLetter(None), RetryPolicy(max_attempts=1))
        shard = Shard.parse(cfg.get("service", {}).get("shard"))
        reduced = reductions(cfg)
    except (ConfigError, SinkFatal, SourceError, ValueError) as exc:
        config_error(f"{args.config}: {exc}")
        return 2
    problems = environment(cfg)
    for problem in problems:
        config_error(f"{args.config}: {problem}")
    if problems:
        source.close()
        return 2
    if world_readable_secret(args.config, cfg):
        print(
            f"warning: {args.config} holds a secret and other users can read it; use ${{VAR}} or <key>_file, "
            f"or chmod 600 it",
            file=sys.stderr,
        )
    names = sink_names(cfg)
    src = cfg["source"]
    where = src.get("path") or src.get("container")
    print(f"Config OK: {args.config}")
    print(f"  source: {src['type']} {where} (identity {source.identity}, start {src.get('start', 'earliest')})")
    print(f"  checkpoints: {checkpoint_path(cfg)}")
    if shard is not None:
        print(f"  shard: {shard} (this instance forwards one of {shard.count} shares of the NICs)")
    for name, s, red in zip(names, cfg["sink"], reduced, strict=True):
        fmt = s.get("format", "asim" if s["type"] == "azure_monitor" else "ecs")
        how = red.describe()
        print(f"  sink {name}: {fmt} -> {_target(s)}" + (f" ({how})" if how else ""))
    if not args.connect:
        source.close()
        return 0
    parts: list[tuple[str, object]] = [(f"source {source.identity}", source)]
    parts += [(f"sink {name} ({_target(s)})", sink) for name, s, sink in zip(names, cfg["sink"], sinks, strict=True)]
    print("Connecting (no events are sent):")
    try:
        # At once: a host that drops packets costs its timeout, not the sum of all of them.
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            outcomes: list[Outcome] = list(pool.map(lambda p: probe(*p), parts))
    finally:
        source.close()
        for sink in sinks:
            sink.close()
    for outcome in outcomes:
        print(f"  {'ok' if outcome.ok else 'FAILED':<6}  {outcome.part}: {outcome.detail}")
    failed = sum(not o.ok for o in outcomes)
    if failed:
        print(f"{failed} of {len(outcomes)} cannot be used as configured.", file=sys.stderr)
        return 1
    print(f"All {len(outcomes)} reachable.")
    return 0


def _target(sink: dict[str, Any]) -> str:
    if sink.get("path"):
        return "standard output" if sink["path"] == "-" else str(sink["path"])
    if sink.get("url"):
        return str(sink["url"]).split("?", 1)[0]
    if sink.get("endpoint"):  # azure_monitor: the DCR's stream at its ingestion endpoint
        return f"{sink['endpoint']} {sink.get('dcr_immutable_id')}/{sink.get('stream', 'Custom-NsgFlowAsim')}"
    if sink.get("host"):
        protocol = sink.get("protocol", "tcp")
        port = sink.get("port", 6514 if protocol == "tls" else 514)
        return f"{protocol}://{sink['host']}:{port}"
    return str(sink.get("type", "?"))
