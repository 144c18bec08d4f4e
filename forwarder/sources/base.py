"""What a source of PT1H.json blobs provides to the reader: discovery and ranged reads, nothing more.

Everything about the blob layout (head, tail, leading commas, rewrites) lives in the reader, so
the Azure source and the directory source behave identically.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BlobRef:
    name: str  # blob name inside the container ("resourceId=/SUBSCRIPTIONS/.../PT1H.json")
    size: int
    etag: str  # changes on every commit; for files, derived from mtime and size
    last_modified: datetime


class BlobGone(Exception):
    """The blob was deleted (retention) between listing and reading."""


class SourceError(Exception):
    """A source failure that retrying will not fix (bad credentials, missing container)."""


class BlobSource(Protocol):
    identity: str  # "account/container": with the blob name, the identity behind event ids
    container: str

    def discover(self) -> Iterable[BlobRef]:
        """Blobs that may hold data not yet read; cheap: never lists hours that can no longer change."""
        ...

    def read(self, name: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of a blob (fewer if it is now shorter). Raises BlobGone if deleted."""
        ...

    def close(self) -> None: ...
