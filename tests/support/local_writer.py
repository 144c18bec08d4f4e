"""Grow PT1H.json files on disk the way Azure grows the blob: each new block goes in before the tail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from forwarder.samples.generator import HEAD, TAIL, BlobSpec, data_blocks


class LocalWriter:
    def __init__(self, root: Path, spec: BlobSpec):
        self.spec = spec
        self.path = root / spec.container / spec.blob_name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._blocks: Iterator[bytes] = data_blocks(spec)
        self.path.write_bytes(HEAD + TAIL)
        self.minutes = 0
        self.data_bytes = 0

    def append_minute(self) -> bool:
        block = next(self._blocks, None)
        if block is None:
            return False
        with self.path.open("r+b") as f:
            f.seek(-len(TAIL), 2)
            f.write(block + TAIL)
        self.minutes += 1
        self.data_bytes += len(block)
        return True
