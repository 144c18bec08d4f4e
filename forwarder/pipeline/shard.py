"""Several instances dividing the blobs: each NIC's stream of hourly blobs belongs to one share.

Static shares need no coordination: N instances configured 1/N to N/N read disjoint sets of blobs,
each with its own checkpoint file. A NIC stays in its share from hour to hour, so a blob is never
read by two instances and its checkpoint lives in exactly one file. Changing N moves NICs between
instances; the hours the new owner has no checkpoint for are then read again (same event ids).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from forwarder.sources.blobpath import stream_key


@dataclass(frozen=True, slots=True)
class Shard:
    index: int  # 1..count
    count: int

    @classmethod
    def parse(cls, text: str | None) -> Shard | None:
        """'K/N' from [service] shard; None (everything) when unset or 1/1. Raises ValueError naming the key."""
        if not text:
            return None
        k, sep, n = text.partition("/")
        if not (sep and k.isdigit() and n.isdigit()) or not 1 <= int(k) <= int(n):
            raise ValueError(f"service.shard = {text!r}: expected K/N with 1 <= K <= N, e.g. '1/2' and '2/2'")
        return None if int(n) == 1 else cls(int(k), int(n))

    def owns(self, blob_name: str) -> bool:
        digest = hashlib.blake2b(stream_key(blob_name).encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
