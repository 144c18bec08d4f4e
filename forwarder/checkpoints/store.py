"""Per-blob delivery positions in a local JSON file, written atomically.

The file is the one piece of state the service keeps: losing it means re-sending everything,
so a file that cannot be read stops the service instead of silently starting over.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from forwarder.exclusive import hold_exclusive

FORMAT_VERSION = 1


class CheckpointError(Exception):
    """The checkpoint file exists but cannot be used; the message says what to do."""


class CheckpointCorrupt(CheckpointError):
    """The file exists but is not a checkpoint file this version can read."""


class CheckpointWriteError(CheckpointError):
    """The checkpoint file could not be written (disk full, folder gone, permissions); nothing was lost:
    the positions stay in memory and the next save tries again."""


@dataclass(slots=True)
class BlobCheckpoint:
    offset: int  # every record before this byte offset has been delivered to every sink
    etag: str = ""  # etag when offset was last advanced or the blob last seen unchanged
    size: int = 0  # blob size at that time
    head: int = 0  # length of the head block learned from the blob ('{"records":[' = 12)
    fingerprint: str = ""  # hex of the bytes just before offset: detects a rewrite that kept the size
    first: str = ""  # hex of the first bytes of the first record (its time): detects a rewrite from scratch
    updated: float = 0.0  # unix time of the last change
    events: int = 0  # events delivered from this blob (for inspection)


class CheckpointStore:
    """Thread-safe map of "identity/blob name" -> BlobCheckpoint, persisted with temp + fsync + rename."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._blobs: dict[str, BlobCheckpoint] = {}
        self._dirty = False
        self.saved_at = 0.0
        # Blobs of hours before this (unix time) were forgotten after delivery: they count as done.
        self.horizon = 0.0
        self._lock_fd: int | None = None

    @classmethod
    def open_exclusive(cls, path: Path) -> CheckpointStore:
        """Load the file for a process that will save it, holding it against every other such process:
        two processes saving one file would each overwrite the other's progress."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = hold_exclusive(path)
        except OSError as exc:
            raise CheckpointError(f"Cannot use the checkpoint folder: path={path.parent} error={exc.strerror}") from exc
        if fd is None:
            raise CheckpointError(
                f"Another nsg-forwarder process (run, backfill or checkpoints reset) is using the checkpoint file: "
                f"path={path}. Give every instance its own [checkpoint] path, or stop the other process first."
            )
        # Temporary files of saves a crash interrupted (write_atomically's); nobody else can be writing one now.
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
        try:
            store = cls.load(path)
        except BaseException:
            os.close(fd)
            raise
        store._lock_fd = fd  # held until the process exits; the kernel releases it even after SIGKILL
        return store

    @classmethod
    def load(cls, path: Path) -> CheckpointStore:
        store = cls(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return store
        except OSError as exc:
            raise CheckpointError(f"Cannot read the checkpoint file {path}: {exc.strerror}.") from exc
        try:
            doc = orjson.loads(raw)
            if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
                raise ValueError(f"unknown format version {doc.get('version') if isinstance(doc, dict) else None!r}")
            store._blobs = {key: BlobCheckpoint(**value) for key, value in doc["blobs"].items()}
            store.horizon = float(doc.get("horizon", 0.0))
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointCorrupt(
                f"The checkpoint file {path} is corrupt or of an unknown format ({exc}). Refusing to start over "
                "silently, which would re-send every event. Either restore it from a backup, or move it aside "
                "and choose where to begin with [source] start (then run again), or run "
                "'nsg-forwarder checkpoints reset --config FILE' to start from the configured start."
            ) from exc
        store.saved_at = path.stat().st_mtime
        return store

    def get(self, key: str) -> BlobCheckpoint | None:
        with self._lock:
            cp = self._blobs.get(key)
            return None if cp is None else BlobCheckpoint(**asdict(cp))

    def put(self, key: str, cp: BlobCheckpoint) -> None:
        with self._lock:
            cp.updated = time.time()
            self._blobs[key] = cp
            self._dirty = True

    def remove(self, key: str) -> None:
        with self._lock:
            if self._blobs.pop(key, None) is not None:
                self._dirty = True

    def items(self) -> list[tuple[str, BlobCheckpoint]]:
        with self._lock:
            return sorted((k, BlobCheckpoint(**asdict(v))) for k, v in self._blobs.items())

    def prune(self, before: float, hour_of: Callable[[str], float | None]) -> int:
        """Forget blobs of hours before ``before`` (unix time) that were read to the end, and move the
        horizon there, so the file stays small over years of retention while such blobs stay done."""
        with self._lock:
            old = [k for k, v in self._blobs.items() if v.etag and (h := hour_of(k)) is not None and h + 3600 <= before]
            for k in old:
                del self._blobs[k]
            if before > self.horizon:
                self.horizon = before
                self._dirty = True
            if old:
                self._dirty = True
            return len(old)

    def before_horizon(self, hour: float | None) -> bool:
        return hour is not None and hour + 3600 <= self.horizon

    def save(self, force: bool = False) -> bool:
        """Write the file atomically if anything changed. Returns whether it wrote."""
        with self._lock:
            if not (self._dirty or force):
                return False
            doc: dict[str, Any] = {
                "version": FORMAT_VERSION,
                "horizon": self.horizon,
                "blobs": {k: asdict(v) for k, v in sorted(self._blobs.items())},
            }
            data = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
            self._dirty = False
        try:
            write_atomically(self.path, data)
        except OSError as exc:
            with self._lock:
                self._dirty = True  # so that the next save writes it, even if nothing else changes
            raise CheckpointWriteError(
                f"Could not write the checkpoint file: path={self.path} error={exc.strerror or exc}"
            ) from exc
        self.saved_at = time.time()
        return True


def write_atomically(path: Path, data: bytes) -> None:
    """temp file in the same directory, fsync, rename over, fsync the directory: old or new, never torn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
