"""A local folder laid out like the storage container (what azcopy or Storage Explorer downloads).

Either the container folder itself (holding ``resourceId=...`` / ``flowLogResourceID=...``) or a
folder holding one or more ``insights-logs-*`` container folders. Files that grow (rewritten by
a sync tool with a new block before the tail) are read incrementally like blobs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from forwarder.probe import Unreachable
from forwarder.sources import blobpath
from forwarder.sources.base import BlobGone, BlobRef, SourceError
from forwarder.sources.blobpath import BLOB_FILE, HOUR
from forwarder.sources.start import parse_start


class DirectorySource:
    cheap_reads = True  # a read costs no request: the reader may check more on every poll

    def __init__(
        self,
        root: Path,
        account: str = "local",
        container: str | None = None,
        start: datetime | None = None,
        latest: bool = False,
    ):
        self.root = root
        self.start = start  # first run: hours before this are not read (start = <RFC 3339 time>)
        # start = "latest": like the Azure source, the first discovery lists only the hours that can still
        # change (the previous and the current one), so older hours stay unread and backfill can read them.
        self._latest = latest and start is None
        self.account = account
        # With container folders under root, blob names carry their container ("insights-logs-.../resourceId=...").
        self.container = container or root.name
        self.identity = account if self._has_container_folders() else f"{account}/{self.container}"

    def _has_container_folders(self) -> bool:
        try:
            return any(p.is_dir() and p.name.startswith("insights-logs-") for p in self.root.iterdir())
        except OSError:
            return False

    def discover(self) -> Iterator[BlobRef]:
        if self._latest:
            self._latest = False
            if self.start is None:  # not set from checkpoints by a restarted service
                self.start = blobpath.floor_hour(datetime.now(UTC)) - HOUR
        return self._walk(self.start, None)

    def backlog(self, since: datetime, until: datetime) -> Iterator[BlobRef]:
        """Blobs of the hours in [since, until), for an explicit backfill."""
        return self._walk(since, until)

    @staticmethod
    def _hour(name: str) -> datetime | None:
        parsed = blobpath.parse(name.split("/", 1)[1] if name.startswith("insights-logs-") else name)
        return parsed.hour if parsed else None

    def _walk(self, since: datetime | None, until: datetime | None) -> Iterator[BlobRef]:
        if not self.root.is_dir():
            raise SourceError(f"The source folder does not exist or is not a folder: path={self.root}")
        self.identity = self.account if self._has_container_folders() else f"{self.account}/{self.container}"
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            if BLOB_FILE not in filenames:
                continue
            path = Path(dirpath) / BLOB_FILE
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            name = path.relative_to(self.root).as_posix()
            if since is not None or until is not None:
                hour = self._hour(name)
                if hour is None or (since and hour + HOUR <= since) or (until and hour >= until):
                    continue
            yield BlobRef(
                name=name,
                size=st.st_size,
                etag=f"{st.st_mtime_ns:x}-{st.st_size:x}-{st.st_ino:x}",
                last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            )

    def read(self, name: str, start: int, end: int) -> bytes:
        try:
            with (self.root / name).open("rb") as f:
                f.seek(start)
                return f.read(max(0, end - start))
        except FileNotFoundError as exc:
            raise BlobGone(name) from exc

    def close(self) -> None:
        pass

    def probe(self) -> str:
        """validate --connect: the folder is there and readable (it is not walked: it may hold years)."""
        if not self.root.is_dir():
            raise Unreachable(f"the source folder {self.root} does not exist or is not a folder")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise Unreachable(f"the source folder {self.root} cannot be read by this user")
        return f"the folder {self.root} is readable"


def from_config(cfg: Mapping[str, Any]) -> DirectorySource:
    start = parse_start(cfg.get("start", "earliest"))
    since = start if isinstance(start, datetime) else None
    return DirectorySource(
        Path(cfg["path"]),
        account=cfg.get("account", "local"),
        container=cfg.get("container"),
        start=since,
        latest=start == "latest",
    )
