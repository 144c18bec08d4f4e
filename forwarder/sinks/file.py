"""The file sink: newline-delimited events in a file, rotated by size or time into a compliance archive.

Durability: ``send`` writes the batch with one ``write`` and ``fdatasync``s before it returns, so a
returned send survives a crash or power loss and the pipeline may advance its checkpoint.

Rotation (``send`` thread, under the lock, fast): fchmod read-only, fsync, close, rename the active
file to its closed name, create a new active file, fsync the directory. From the rename on, the
lines are safe under a name that is never reused.

Finalisation (a background thread, in sequence order, so compression never stalls ``send``):
optionally gzip to a hidden temp file, fsync, rename to ``<closed>.gz``, fsync the directory; then
append the SHA-256 to ``MANIFEST.sha256`` (append + fsync); then remove the uncompressed file.
``open`` finishes whatever a killed process left half-done, so every step can be interrupted.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import logging
import os
import queue
import re
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forwarder.config import units
from forwarder.exclusive import hold_exclusive
from forwarder.formats import FORMATS
from forwarder.fspaths import cannot_write
from forwarder.probe import Unreachable
from forwarder.sinks.base import Batch, Sink, SinkFatal
from forwarder.sinks.deadletter import DeadLetter
from forwarder.sinks.file_archive import (
    MANIFEST_NAME,
    READ_CHUNK,
    TMP_SUFFIX,
    Naming,
    VerifyReport,
    append_manifest,
    fsync_dir,
    main_verify,
    read_manifest,
    sha256_file,
    verify_archive,
)
from forwarder.sinks.retry import RetriesExhausted, RetryPolicy, TransientError
from forwarder.sinks.torn_line import trim_torn_line

__all__ = ["FileSink", "FileSinkConfigError", "StdoutSink", "VerifyReport", "from_config", "main_verify",
           "parse_config", "verify_archive"]  # fmt: skip
log = logging.getLogger("forwarder.sinks.file")

DEFAULT_ROTATE_BYTES = 100 * 1024 * 1024
DEFAULT_MODE = 0o640
DEFAULT_GZIP_LEVEL = 3  # about as fast as 1, and 10% smaller; 6 is ~1.5x slower for another 25%
WRITE_CHUNK = 1 << 20
# Closed files waiting for compression/manifest before send blocks: bounds the uncompressed backlog on disk.
MAX_PENDING = 2
KEYS = frozenset(
    {"type", "format", "name", "path", "rotate_bytes", "rotate_interval", "gzip", "gzip_level", "manifest", "mode"}
)
_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$", re.IGNORECASE)
_INTERVAL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)

# Test hook: called with the name of each step of rotation and finalisation, so a test can SIGKILL a real
# process at exactly that point. None in production (one attribute check per rotation step).
step_hook: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if step_hook is not None:
        step_hook(name)


class FileSinkConfigError(ValueError):
    """A bad ``[[sink]]`` table of type file; the message names the sink and the key."""


@dataclass(frozen=True)
class FileSinkConfig:
    path: Path | None  # None = stdout
    format: str = "ecs"
    rotate_bytes: int = 0  # 0 = no size rotation
    rotate_interval: int = 0  # seconds, 0 = no time rotation
    gzip: bool = False
    gzip_level: int = DEFAULT_GZIP_LEVEL
    manifest: bool = False
    mode: int = DEFAULT_MODE

    @property
    def rotates(self) -> bool:
        return bool(self.rotate_bytes or self.rotate_interval)

    @property
    def closed_mode(self) -> int:
        return self.mode & 0o444


def parse_size(value: Any, key: str) -> int:
    try:
        return units.parse_size(value, key)
    except ValueError as exc:
        raise FileSinkConfigError(str(exc)) from exc


def parse_interval(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise FileSinkConfigError(f'{key}: expected seconds or a duration like "15m", "1h", "1d", got {value!r}')
    if isinstance(value, int | float) and value >= 0 and float(value).is_integer():
        return int(value)
    if isinstance(value, str) and (m := _INTERVAL.match(value)):
        return int(m[1]) * _INTERVAL_UNITS[m[2].lower()]
    raise FileSinkConfigError(f'{key}: expected whole seconds or a duration like "15m", "1h", "1d", got {value!r}')


def parse_mode(value: Any, key: str) -> int:
    if isinstance(value, str) and re.fullmatch(r"(0o?)?[0-7]{3}", value.strip()):
        mode = int(value.strip().removeprefix("0o"), 8)
    elif isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        raise FileSinkConfigError(f'{key}: expected permissions like 0o640 or "0640", got {value!r}')
    if not 0 <= mode <= 0o777 or mode & 0o600 != 0o600:
        raise FileSinkConfigError(
            f"{key}: permissions {mode:#o} must be within 0o777 and let the owner read and write (0o600)"
        )
    return mode


def parse_config(cfg: Mapping[str, Any], name: str = "file") -> FileSinkConfig:
    """Check one ``[[sink]]`` table of type file; raises FileSinkConfigError naming the bad key."""
    where = f"sink {name}"
    unknown = sorted(set(cfg) - KEYS)
    if unknown:
        raise FileSinkConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")
    if cfg.get("type", "file") != "file":
        raise FileSinkConfigError(f'{where}: type: expected "file", got {cfg.get("type")!r}')
    fmt = cfg.get("format", "ecs")
    if fmt not in FORMATS:
        raise FileSinkConfigError(f"{where}: format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    raw_path = cfg.get("path")
    if not isinstance(raw_path, str) or not raw_path.strip():
        raise FileSinkConfigError(f'{where}: path: required, the file to write (or "-" for stdout)')
    for key in ("gzip", "manifest"):
        if key in cfg and not isinstance(cfg[key], bool):
            raise FileSinkConfigError(f"{where}: {key}: expected true or false, got {cfg[key]!r}")
    level = cfg.get("gzip_level", DEFAULT_GZIP_LEVEL)
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 9:
        raise FileSinkConfigError(f"{where}: gzip_level: expected an integer from 1 (fastest) to 9, got {level!r}")
    mode = parse_mode(cfg.get("mode", DEFAULT_MODE), f"{where}: mode")

    if raw_path == "-":
        for key in ("rotate_bytes", "rotate_interval", "gzip", "manifest"):
            if cfg.get(key):
                raise FileSinkConfigError(f'{where}: {key}: not possible when path is "-" (stdout)')
        return FileSinkConfig(path=None, format=fmt, mode=mode)

    path = Path(raw_path).expanduser()
    if path.name in ("", ".", "..") or "\n" in path.name or "\\" in path.name:
        raise FileSinkConfigError(f"{where}: path: {raw_path!r} does not name a file")
    rotate_bytes = parse_size(cfg.get("rotate_bytes", DEFAULT_ROTATE_BYTES), f"{where}: rotate_bytes")
    rotate_interval = parse_interval(cfg.get("rotate_interval", 0), f"{where}: rotate_interval")
    rotates = bool(rotate_bytes or rotate_interval)
    gz = bool(cfg.get("gzip", False))
    manifest = bool(cfg.get("manifest", rotates))
    if not rotates and (gz or manifest):
        key = "gzip" if gz else "manifest"
        raise FileSinkConfigError(
            f"{where}: {key}: needs rotation (rotate_bytes or rotate_interval): only closed files are "
            "compressed and listed"
        )
    if path.suffix == ".gz":
        raise FileSinkConfigError(
            f"{where}: path: the active file is plain text; set gzip = true to compress closed files"
        )
    if path.name == MANIFEST_NAME:
        raise FileSinkConfigError(f"{where}: path: {MANIFEST_NAME} is the archive's manifest, pick another name")
    return FileSinkConfig(path, fmt, rotate_bytes, rotate_interval, gz, level, manifest, mode)


def from_config(
    cfg: Mapping[str, Any],
    name: str,
    dead_letter: DeadLetter,
    retry: RetryPolicy,
    clock: Callable[[], float] = time.time,
) -> Sink:
    config = parse_config(cfg, name)
    if config.path is None:
        return StdoutSink(name, config.format)
    return FileSink(config, name, dead_letter, retry, clock)


def _encoded(lines: Sequence[str]) -> Iterator[bytes]:
    """The lines as UTF-8, each with its newline, about a MiB at a time: the buffer stays in cache and is
    reused, where one 70 MB join of a whole chunk costs fresh pages twice (str and bytes)."""
    step = max(1, WRITE_CHUNK // (len(lines[0]) + 1))
    for i in range(0, len(lines), step):
        yield "\n".join([*lines[i : i + step], ""]).encode("utf-8", "backslashreplace")


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class StdoutSink:
    """``path = "-"``: events on stdout, for pipes and the README demo. No rotation, nothing to fsync."""

    def __init__(self, name: str, fmt: str):
        self.name = name
        self.format = fmt
        self._fd = sys.stdout.fileno()

    def open(self) -> None:
        sys.stdout.flush()

    def send(self, batch: Batch) -> None:
        if not batch.lines:
            return
        try:
            for data in batch.data if batch.data is not None else _encoded(batch.lines):
                _write_all(self._fd, data)
        except BrokenPipeError as exc:
            raise SinkFatal(f"sink {self.name}: stdout was closed by the reader") from exc
        except OSError as exc:
            raise SinkFatal(f"sink {self.name}: cannot write to stdout: {exc}") from exc
        with contextlib.suppress(OSError):  # pipes and terminals cannot be fsynced; files redirected to can
            os.fsync(self._fd)

    def probe(self) -> str:
        return "writes to standard output"

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


_STOP = object()


class FileSink:
    """Appends batches to ``path``; rotates, compresses and lists closed files in the manifest."""

    def __init__(
        self,
        config: FileSinkConfig,
        name: str,
        dead_letter: DeadLetter,
        retry: RetryPolicy,
        clock: Callable[[], float] = time.time,
    ):
        if config.path is None:
            raise ValueError("FileSink needs a path; use StdoutSink for stdout")
        self.name = name
        self.format = config.format
        self.config = config
        self.path = config.path.absolute()
        self.directory = self.path.parent
        self.manifest_path = self.directory / MANIFEST_NAME
        self.naming = Naming.for_active(self.path)
        self.dead_letter = dead_letter
        self.retry = retry
        self._clock = clock
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._size = 0
        self._period: int | None = None  # interval index the active file's lines belong to
        self._next_seq = 1
        self._pending: queue.Queue[object] = queue.Queue(MAX_PENDING)
        self._worker: threading.Thread | None = None
        self._worker_error: BaseException | None = None
        self._reopen_requested = False
        self.rotations = 0

    # -- lifecycle ------------------------------------------------------------------------------------

    def probe(self) -> str:
        """validate --connect: whether this user can create and replace files where the sink writes."""
        why = cannot_write(self.path)
        if why:
            raise Unreachable(why)
        return f"can write {self.path}"

    def open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
            self._take_lock()
            backlog = self._recover() if self.config.rotates else []
            self._open_active()
        except OSError as exc:
            self._release_lock()
            raise SinkFatal(f"sink {self.name}: cannot open {self.path}: {exc}") from exc
        except BaseException:
            self._release_lock()
            raise
        if self.config.rotates:
            self._worker = threading.Thread(target=self._work, name=f"file-sink-{self.name}", daemon=True)
            self._worker.start()
            with self._lock:
                for closed in backlog:
                    self._enqueue(closed)
                self._rotate_if_stale(self._clock())

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        if self._worker is not None:
            self._enqueue(_STOP)
            self._worker.join()
            self._worker = None
        self._release_lock()

    def reopen(self) -> None:
        """SIGHUP (external logrotate): write to whatever is at ``path`` now, a new file if it was moved.

        Safe to call from a signal handler: if a send holds the lock (possibly the very frame the handler
        interrupted), the reopen is left to the start of the next send instead of waiting for the lock."""
        self._reopen_requested = True
        if self._lock.acquire(blocking=False):
            try:
                self._reopen_if_requested()
            finally:
                self._lock.release()

    def _reopen_if_requested(self) -> None:
        if not self._reopen_requested or self._fd is None:
            return
        self._reopen_requested = False
        os.close(self._fd)
        self._fd = None
        try:
            self._open_active()
        except OSError as exc:
            raise SinkFatal(f"sink {self.name}: cannot reopen {self.path}: {exc}") from exc
        log.info("Reopened the output file: sink=%s path=%s size=%d", self.name, self.path, self._size)

    # -- the hot path ---------------------------------------------------------------------------------

    def send(self, batch: Batch) -> None:
        lines = batch.lines
        if not lines:
            return
        if batch.data is not None:
            spans = batch.data  # the lines as UTF-8 with their newlines, as the compiled core rendered them
            estimate = sum(map(len, spans))
        else:
            spans = None
            estimate = sum(map(len, lines)) + len(lines)  # bytes, exact for ASCII; decides rotation before writing
        try:
            self.retry.call(lambda: self._append(lines, spans, estimate), what=f"append to {self.path}", sink=self.name)
        except RetriesExhausted as exc:
            self.dead_letter.write(self.name, str(exc), list(zip(batch.events, lines, strict=True)))

    def _append(self, lines: Sequence[str], spans: Sequence[memoryview] | None, estimate: int) -> None:
        with self._lock:
            if self._worker_error is not None:
                raise SinkFatal(f"sink {self.name}: archiving closed files failed: {self._worker_error}")
            if self._fd is None:
                raise SinkFatal(f"sink {self.name}: send after close")
            self._reopen_if_requested()
            now = self._clock()
            if self._size:
                if self.config.rotate_bytes and self._size + estimate > self.config.rotate_bytes:
                    self._rotate(now, "size")
                elif self.config.rotate_interval and self._period != self._period_of(now):
                    self._rotate(self._period_end(), "interval")
            fd = self._fd
            assert fd is not None
            start = self._size
            written = 0
            # One fsync per batch.
            try:
                for data in spans if spans is not None else _encoded(lines):
                    _write_all(fd, data)
                    written += len(data)
                os.fdatasync(fd)
            except OSError as exc:
                # All or nothing: a retried batch must not follow half of itself.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                    os.fdatasync(fd)
                if exc.errno in _NO_SPACE:
                    raise TransientError(f"no space left for {self.path}: {exc.strerror}") from exc
                raise SinkFatal(f"sink {self.name}: cannot write {self.path}: {exc}") from exc
            if not start and self.config.rotate_interval:
                self._period = self._period_of(now)
            self._size = start + written

    # -- rotation -------------------------------------------------------------------------------------

    def _period_of(self, epoch: float) -> int:
        return int(epoch // self.config.rotate_interval)

    def _period_end(self) -> float:
        assert self._period is not None
        return float((self._period + 1) * self.config.rotate_interval)

    def _rotate(self, stamp: float, reason: str) -> None:
        """Close the active file under its archive name and start a new one. Caller holds the lock."""
        fd = self._fd
        assert fd is not None
        seq = self._next_seq
        closed = self.directory / self.naming.closed(stamp, seq)
        while closed.exists() or closed.with_name(closed.name + ".gz").exists():  # never overwrite
            seq += 1
            closed = self.directory / self.naming.closed(stamp, seq)
        self._next_seq = seq + 1
        try:
            os.fchmod(fd, self.config.closed_mode)
            os.fsync(fd)
            os.close(fd)
            self._fd = None
            _step("rotate:closed")
            os.rename(self.path, closed)
            _step("rotate:renamed")
            self._open_active()
            _step("rotate:new-active")
        except OSError as exc:
            raise SinkFatal(f"sink {self.name}: rotating {self.path} to {closed.name} failed: {exc}") from exc
        self.rotations += 1
        log.info(
            "Rotated the output file: sink=%s reason=%s closed=%s bytes=%d",
            self.name,
            reason,
            closed.name,
            closed.stat().st_size,
        )
        self._enqueue(closed)

    def _enqueue(self, item: object) -> None:
        """Blocks while MAX_PENDING closed files await the worker: backpressure instead of a growing backlog."""
        while self._worker is not None and self._worker.is_alive():
            try:
                self._pending.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        if isinstance(item, Path):  # safe under its closed name; the next start lists it
            log.warning("Left a closed file for the next start to archive: sink=%s file=%s", self.name, item.name)

    def _rotate_if_stale(self, now: float) -> None:
        """An active file whose interval has passed (idle sink, or a restart after the boundary)."""
        if self.config.rotate_interval and self._size and self._fd is not None and self._period != self._period_of(now):
            self._rotate(self._period_end(), "interval")

    def _open_active(self) -> None:
        created = False
        try:
            st = self.path.stat()
        except FileNotFoundError:
            created = True
        else:
            if st.st_size:
                self._trim_torn_line()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self.config.mode)
        if created:
            os.fchmod(fd, self.config.mode)  # the umask does not get a say in an archive's permissions
            fsync_dir(self.directory)
        st = os.fstat(fd)
        self._fd = fd
        self._size = st.st_size
        self._period = self._period_of(st.st_mtime) if self.config.rotate_interval and st.st_size else None

    def _trim_torn_line(self) -> None:
        """A batch cut short by a crash never had its send return: drop the partial line (it is sent again)."""
        removed = trim_torn_line(self.path)
        if removed:
            log.warning(
                "Removed an incomplete last line left by a crash; its batch is sent again: sink=%s path=%s bytes=%d",
                self.name,
                self.path,
                removed,
            )

    # -- finalisation (worker thread) -----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            timeout = self._until_boundary()
            try:
                item = self._pending.get(timeout=timeout)
            except queue.Empty:
                self._idle_rotate()
                continue
            if item is _STOP:
                return
            assert isinstance(item, Path)
            if not self._finalise_retrying(item):
                return

    def _until_boundary(self) -> float | None:
        if not self.config.rotate_interval:
            return None
        interval = self.config.rotate_interval
        now = self._clock()
        # Capped so an injected clock (tests) or a clock step is noticed soon.
        return min(max(0.05, interval - now % interval + 0.01), 1.0)

    def _idle_rotate(self) -> None:
        # Never wait for the lock: a send holding it may be blocked putting into the queue this thread drains.
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._pending.empty():
                self._rotate_if_stale(self._clock())
        except SinkFatal as exc:
            self._worker_error = exc
            log.error("Rotating an idle output file failed: sink=%s error=%s", self.name, exc)
        finally:
            self._lock.release()

    def _finalise_retrying(self, closed: Path) -> bool:
        attempt = 0
        while True:
            try:
                self._finalise(closed)
                return True
            except OSError as exc:
                attempt += 1
                wait = min(self.retry.initial * 2**attempt, self.retry.maximum)
                log.warning(
                    "Archiving a closed file failed, retrying: sink=%s file=%s attempt=%d wait_s=%.1f error=%s",
                    self.name,
                    closed.name,
                    attempt,
                    wait,
                    exc,
                )
                if self.retry.stop.wait(wait):
                    log.warning("Left a closed file for the next start to archive: sink=%s file=%s", self.name, closed)
                    return False
            except Exception as exc:
                self._worker_error = exc
                log.error("Archiving a closed file failed for good: sink=%s file=%s error=%r", self.name, closed, exc)
                return False

    def _finalise(self, closed: Path) -> None:
        """Compress (if configured), list in the manifest, remove the uncompressed copy. Idempotent."""
        if self.config.gzip and closed.suffix != ".gz":
            listed = closed.with_name(closed.name + ".gz")
            digest = self._compress(closed, listed)
        else:
            listed = closed
            if listed.stat().st_mode & 0o777 != self.config.closed_mode:
                os.chmod(listed, self.config.closed_mode)
            digest = sha256_file(listed) if self.config.manifest else ""
        if self.config.manifest:
            append_manifest(self.manifest_path, digest, listed.name)
            _step("finalise:listed")
        if listed != closed:
            os.unlink(closed)
            fsync_dir(self.directory)
            _step("finalise:removed-uncompressed")
        log.info("Archived a closed file: sink=%s file=%s sha256=%s", self.name, listed.name, digest)

    def _compress(self, source: Path, target: Path) -> str:
        """gzip ``source`` into ``target`` via a temp file; the SHA-256 of the compressed bytes."""
        tmp = self.directory / f".{target.name}{TMP_SUFFIX}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        h = hashlib.sha256()
        # wbits=31: a gzip member with header and CRC, which gzip -d and zcat read.
        comp = zlib.compressobj(self.config.gzip_level, zlib.DEFLATED, 31)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with source.open("rb") as src:
                while chunk := src.read(READ_CHUNK):
                    out = comp.compress(chunk)
                    if out:
                        h.update(out)
                        _write_all(fd, out)
            out = comp.flush()
            h.update(out)
            _write_all(fd, out)
            os.fchmod(fd, self.config.closed_mode)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.close(fd)
        _step("finalise:compressed-tmp")
        os.rename(tmp, target)
        fsync_dir(self.directory)
        _step("finalise:renamed-gz")
        return h.hexdigest()

    # -- recovery (open) ------------------------------------------------------------------------------

    def _take_lock(self) -> None:
        fd = hold_exclusive(self.path)
        if fd is None:
            raise SinkFatal(
                f"sink {self.name}: another process is writing {self.path}; give every process its own path"
            )
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _recover(self) -> list[Path]:
        """Finish what a killed process left: temp files, uncompressed copies, files not yet listed.

        Returns the closed files still to compress, in sequence order, for the worker."""
        if trim_torn_line(self.manifest_path):
            log.warning("Cut an incomplete last line from the manifest left by a crash: path=%s", self.manifest_path)
        entries, _ = read_manifest(self.manifest_path)
        listed = {e.name for e in entries}
        last_listed = max((s for e in entries if (s := self.naming.seq(e.name)) is not None), default=0)
        ours: dict[int, set[str]] = {}
        for name in os.listdir(self.directory):
            seq = self.naming.seq(name)
            if seq is not None:
                ours.setdefault(seq, set()).add(name)
        self._next_seq = max([last_listed, *ours]) + 1
        backlog: list[Path] = []
        for seq in sorted(ours):
            names = ours[seq]
            for tmp in sorted(n for n in names if n.startswith(".")):
                (self.directory / tmp).unlink()
                names.discard(tmp)
                log.warning("Removed a partial compressed file left by a crash: sink=%s file=%s", self.name, tmp)
            gz = next((self.directory / n for n in names if n.endswith(".gz")), None)
            plain = next((self.directory / n for n in names if not n.endswith(".gz")), None)
            if seq <= last_listed:
                # Listed and compressed, but the crash came before the original was removed.
                if plain and gz and gz.name in listed and plain.name not in listed and self._same_content(plain, gz):
                    os.unlink(plain)
                    fsync_dir(self.directory)
                # Anything else older than the manifest's newest entry is not ours to bless: verify reports it.
                continue
            if plain and gz:
                if self._same_content(plain, gz):  # the .gz was complete before its rename
                    self._finalise(gz)
                    os.unlink(plain)
                    fsync_dir(self.directory)
                    continue
                gz.unlink()
            if plain and self.config.gzip:
                backlog.append(plain)
            elif plain or gz:
                self._finalise(plain or gz)  # type: ignore[arg-type]
        if backlog:
            log.warning(
                "Found closed files not yet compressed after a restart; archiving them now: sink=%s files=%s",
                self.name,
                ",".join(p.name for p in backlog),
            )
        return backlog

    @staticmethod
    def _same_content(plain: Path, gz: Path) -> bool:
        try:
            with gzip.open(gz, "rb") as g, plain.open("rb") as p:
                while True:
                    a, b = g.read(READ_CHUNK), p.read(READ_CHUNK)
                    if a != b:
                        return False
                    if not a:
                        return True
        except (OSError, EOFError, zlib.error):
            return False
