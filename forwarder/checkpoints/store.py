"""Per-blob delivery positions in a local JSON file, with a journal so that a save costs what changed.

The file is the one piece of state the service keeps: losing it means re-sending everything,
so a file that cannot be read stops the service instead of silently starting over.

Its size must not grow with the estate's history: thousands of NICs write a blob each per hour. So
a blob has its own entry only while its hour can still change; once every blob of an hour was read
to its end, none changed for two hours and the hour is two hours past, the hour is **settled**: its
entries give way to one record, the time it settled (a blob of that hour listed later counts as
delivered unless it was modified after that time), and hours older than ``retain_days`` are
forgotten behind the horizon.

Saving: the file is ``{"version": 2, "generation": g, "horizon", "settled", "blobs"}``, written
atomically (temp file, fsync, rename, fsync the folder). Between such compactions, every save appends
what changed since the previous one to ``<file>.journal`` as JSON lines of generation g, and fsyncs.
Loading reads the file and replays the journal's lines of its generation; a line cut by a crash is
dropped (its save had not returned). Version 1 files (without journal) are read too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from forwarder.exclusive import hold_exclusive
from forwarder.sinks.torn_line import trim_torn_line

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
SETTLE_AFTER = 2 * 3600.0  # seconds after an hour's end, and after its blobs' last change, before it settles
JOURNAL_MIN = 4 << 20  # the journal may grow to this, or to the size of the file, before a compaction
_HOUR = 3600.0


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


HourOf = Callable[[str], "float | None"]


def hour_text(hour: float) -> str:
    return datetime.fromtimestamp(hour, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hour_value(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


class CheckpointStore:
    """Thread-safe map of "identity/blob name" -> BlobCheckpoint, plus settled hours; persisted as above."""

    def __init__(self, path: Path):
        self.path = path
        self.journal_path = path.with_name(path.name + ".journal")
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()  # one save at a time: a compaction and an append must not interleave
        self._blobs: dict[str, BlobCheckpoint] = {}
        self.settled: dict[float, float] = {}  # hour (unix time) -> when its blobs settled
        self._dirty: set[str] = set()  # keys changed (or removed) since the last save
        self._meta_dirty = False  # horizon or settled hours changed since the last save
        self._full = True  # the next save writes the whole file (nothing of this store is on disk yet)
        self._torn = False  # an append failed: the journal may end in part of a line
        self.generation = 0
        self._file_size = 0
        self._journal_size = 0
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
            trim_torn_line(store.journal_path)  # a save cut by a crash had not returned: nothing relied on it
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
            if not isinstance(doc, dict) or doc.get("version") not in READABLE_VERSIONS:
                raise ValueError(f"unknown format version {doc.get('version') if isinstance(doc, dict) else None!r}")
            store._blobs = {key: BlobCheckpoint(**value) for key, value in doc["blobs"].items()}
            store.horizon = float(doc.get("horizon", 0.0))
            store.settled = {_hour_value(h): float(t) for h, t in doc.get("settled", {}).items()}
            store.generation = int(doc.get("generation", 0))
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointCorrupt(
                f"The checkpoint file {path} is corrupt or of an unknown format ({exc}). Refusing to start over "
                "silently, which would re-send every event. Either restore it from a backup, or move it aside "
                "and choose where to begin with [source] start (then run again), or run "
                "'nsg-forwarder checkpoints reset --config FILE' to start from the configured start."
            ) from exc
        store._file_size = len(raw)
        store._replay_journal()
        store._full = doc.get("version") != FORMAT_VERSION
        store.saved_at = path.stat().st_mtime
        return store

    def _replay_journal(self) -> None:
        try:
            raw = self.journal_path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CheckpointError(f"Cannot read the checkpoint journal {self.journal_path}: {exc.strerror}.") from exc
        self._journal_size = len(raw)
        for n, line in enumerate(raw.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
                if entry.get("g") != self.generation:
                    continue  # written before the file's last compaction: the file already holds it
                if "k" in entry:
                    if entry.get("rm"):
                        self._blobs.pop(entry["k"], None)
                    else:
                        self._blobs[entry["k"]] = BlobCheckpoint(**entry["cp"])
                if "horizon" in entry:
                    self.horizon = float(entry["horizon"])
                if "settled" in entry:
                    self.settled = {_hour_value(h): float(t) for h, t in entry["settled"].items()}
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                if not raw.endswith(b"\n") and n == raw.count(b"\n") + 1:
                    break  # the last line, cut by a crash: its save never returned
                raise CheckpointCorrupt(
                    f"The checkpoint journal {self.journal_path} is corrupt at line {n} ({exc}). Restore the "
                    "checkpoint file and its journal from a backup, or run 'nsg-forwarder checkpoints reset'."
                ) from exc

    def get(self, key: str) -> BlobCheckpoint | None:
        with self._lock:
            cp = self._blobs.get(key)
            return None if cp is None else BlobCheckpoint(**asdict(cp))

    def put(self, key: str, cp: BlobCheckpoint) -> None:
        with self._lock:
            cp.updated = time.time()
            self._blobs[key] = cp
            self._dirty.add(key)

    def remove(self, key: str) -> None:
        with self._lock:
            if self._blobs.pop(key, None) is not None:
                self._dirty.add(key)

    def items(self) -> list[tuple[str, BlobCheckpoint]]:
        with self._lock:
            return sorted((k, BlobCheckpoint(**asdict(v))) for k, v in self._blobs.items())

    def __len__(self) -> int:
        with self._lock:
            return len(self._blobs)

    @property
    def empty(self) -> bool:
        """Nothing delivered yet: no blob, no settled hour, no horizon (a first run)."""
        with self._lock:
            return not self._blobs and not self.settled and not self.horizon

    def prune(self, before: float, hour_of: HourOf, now: float | None = None) -> int:
        """Settle the hours that are complete and over, and forget everything of hours before ``before`` (unix
        time), moving the horizon there: the file stays small over years of retention and thousands of NICs.
        Returns how many blob entries were dropped."""
        now = time.time() if now is None else now
        with self._lock:
            by_hour: dict[float, list[str]] = {}
            open_hours: set[float] = set()
            dropped = 0
            for key, cp in self._blobs.items():
                hour = hour_of(key)
                if hour is None:
                    continue
                if hour + _HOUR <= before and cp.etag:
                    by_hour.setdefault(hour, []).append(key)  # behind the horizon: forgotten, as done
                elif not cp.etag or cp.updated + SETTLE_AFTER > now:
                    open_hours.add(hour)  # not read to its end, or still changing: keep the hour per blob
                elif hour + _HOUR + SETTLE_AFTER <= now:
                    by_hour.setdefault(hour, []).append(key)
            for hour, keys in by_hour.items():
                if hour in open_hours:
                    continue  # a blob of that hour is not read to its end yet: its hour stays per blob
                for key in keys:
                    del self._blobs[key]
                    self._dirty.add(key)
                dropped += len(keys)
                if hour + _HOUR > before:
                    self.settled[hour] = now
                    self._meta_dirty = True
            for hour in [h for h in self.settled if h + _HOUR <= before]:
                del self.settled[hour]
                self._meta_dirty = True
            if before > self.horizon:
                self.horizon = before
                self._meta_dirty = True
            return dropped

    def before_horizon(self, hour: float | None) -> bool:
        return hour is not None and hour + _HOUR <= self.horizon

    def settled_done(self, hour: float | None, modified: float) -> bool:
        """A blob without an entry, of a settled hour, and not modified since it settled, was delivered."""
        if hour is None:
            return False
        with self._lock:
            at = self.settled.get(hour)
        return at is not None and modified <= at

    def newest_hour(self) -> float | None:
        with self._lock:
            return max(self.settled) if self.settled else None

    def save(self, force: bool = False) -> bool:
        """Write what changed: appended to the journal, or the whole file when the journal has grown (or
        ``force``). Returns whether it wrote."""
        with self._save_lock:
            with self._lock:
                if not (self._dirty or self._meta_dirty or force or self._full):
                    return False
                compact = force or self._full or self._journal_size >= max(JOURNAL_MIN, self._file_size)
                dirty, meta = self._dirty, self._meta_dirty
                self._dirty, self._meta_dirty = set(), False
                if compact:
                    generation = self.generation + 1
                    data = self._document(generation)
                else:
                    data = self._journal_lines(dirty, meta)
            try:
                if compact:
                    write_atomically(self.path, data)
                    self.generation = generation
                    self._file_size = len(data)
                    self._full = False
                    with contextlib.suppress(FileNotFoundError):
                        os.truncate(self.journal_path, 0)  # its lines are of the old generation now anyway
                    self._journal_size = 0
                else:
                    if self._torn:
                        trim_torn_line(self.journal_path)  # what a failed append left of its last line
                        self._torn = False
                    with self.journal_path.open("ab") as out:
                        out.write(data)
                        out.flush()
                        os.fsync(out.fileno())
                    self._journal_size += len(data)
            except OSError as exc:
                with self._lock:
                    self._dirty |= dirty  # so that the next save writes them, even if nothing else changes
                    self._meta_dirty = self._meta_dirty or meta
                    self._torn = self._torn or not compact
                raise CheckpointWriteError(
                    f"Could not write the checkpoint file: path={self.path} error={exc.strerror or exc}"
                ) from exc
        self.saved_at = time.time()
        return True

    def _document(self, generation: int) -> bytes:
        doc: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "generation": generation,
            "horizon": self.horizon,
            "settled": {hour_text(h): t for h, t in sorted(self.settled.items())},
            "blobs": {k: asdict(v) for k, v in sorted(self._blobs.items())},
        }
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2)

    def _journal_lines(self, dirty: set[str], meta: bool) -> bytes:
        g = self.generation
        lines = []
        for key in sorted(dirty):
            cp = self._blobs.get(key)
            entry: dict[str, Any] = {"g": g, "k": key, "rm": 1} if cp is None else {"g": g, "k": key, "cp": asdict(cp)}
            lines.append(orjson.dumps(entry))
        if meta:
            settled = {hour_text(h): t for h, t in sorted(self.settled.items())}
            lines.append(orjson.dumps({"g": g, "horizon": self.horizon, "settled": settled}))
        return b"\n".join(lines) + b"\n"


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
