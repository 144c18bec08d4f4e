"""Checks beyond the schema: what a config says that cannot work, found before anything runs.

``consistency`` looks at the config alone (every command runs it when loading); ``environment`` looks at
this machine's files and folders without changing anything (``validate`` runs it, as systemd's
ExecStartPre does, so that a start fails with the key named instead of a service failing later).
Each problem is one sentence that begins with the key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from forwarder.config.paths import STDOUT
from forwarder.fspaths import cannot_read, cannot_write
from forwarder.ops.metrics import parse_listen
from forwarder.sources.start import parse_start

DEFAULT_CHECKPOINT = "/var/lib/nsg-forwarder/checkpoints.json"
DEAD_LETTER_NAME = "dead-letter.ndjson"
TLS_KEYS = ("tls_ca_file", "tls_cert_file", "tls_key_file")


def checkpoint_file(cfg: Mapping[str, Any]) -> Path:
    return Path(cfg.get("checkpoint", {}).get("path", DEFAULT_CHECKPOINT))


def dead_letter_file(cfg: Mapping[str, Any]) -> Path:
    return Path(cfg.get("dead_letter", {}).get("path") or checkpoint_file(cfg).with_name(DEAD_LETTER_NAME))


def written_files(cfg: Mapping[str, Any]) -> Iterator[tuple[str, Path]]:
    """(key, path) of every file the forwarder writes: the checkpoint file, the dead-letter file, file sinks."""
    yield "checkpoint.path", checkpoint_file(cfg)
    where = "dead_letter.path" if cfg.get("dead_letter", {}).get("path") else "the dead-letter file (default)"
    yield where, dead_letter_file(cfg)
    for i, sink in enumerate(cfg.get("sink", [])):
        if sink.get("type") == "file" and sink.get("path") not in (None, "", STDOUT):
            yield f"sink[{i}].path", Path(sink["path"])


def consistency(cfg: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    listen = cfg.get("metrics", {}).get("listen", "")
    if listen:
        try:
            parse_listen(listen)
        except ValueError as exc:
            problems.append(str(exc))
    start = cfg.get("source", {}).get("start")
    if start is not None:
        try:
            parse_start(start)
        except ValueError as exc:
            problems.append(str(exc))
    seen: dict[str, str] = {}
    for key, path in written_files(cfg):
        real = os.path.realpath(path)
        if real in seen:
            problems.append(
                f"{key}: {path} is also {seen[real]}: two writers on one file would corrupt it; give each its own file"
            )
        else:
            seen[real] = key
    return problems


def environment(cfg: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    source = cfg.get("source", {})
    if source.get("type") == "directory":
        folder = Path(source["path"])
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            problems.append(f"source.path: {folder} {what}")
        elif not os.access(folder, os.R_OK | os.X_OK):
            problems.append(f"source.path: {folder} cannot be read by this user")
    for key, path in written_files(cfg):
        why = cannot_write(path)
        if why:
            problems.append(f"{key}: {why}")
    tables = [("source", source)] + [(f"sink[{i}]", s) for i, s in enumerate(cfg.get("sink", []))]
    for where, table in tables:
        for key in TLS_KEYS:
            if table.get(key):
                why = cannot_read(Path(table[key]))
                if why:
                    problems.append(f"{where}.{key}: {why}")
    return problems
