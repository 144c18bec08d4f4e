"""Writes PT1H.json blobs into Azurite the way Network Watcher does: block by block, re-committing.

A blob starts as a head block and a tail block (``{"records":[`` + ``]}``). Every "minute" one
more data block is staged and the whole block list is committed again with the new block just
before the tail, so the blob grows and its etag changes, exactly like Azure's writer. The data
blocks are the generator's (``forwarder.samples.generator.data_blocks``), so a test can compare
what the forwarder produced with ``blob_bytes(spec)``.

    writer = AzureWriter(container_client)
    writer.start(spec)                 # head + tail only
    while writer.append_minute(spec):  # one data block per call; False once spec.minutes are in
        ...
    writer.write_all(spec)             # or the whole blob in one commit
    writer.rewrite(spec, minutes=3)    # from scratch with fresh block ids: shorter, new etag
    writer.delete(spec)
    writer.blocks_committed[spec.blob_name]  # data blocks in the committed list
"""

from __future__ import annotations

from dataclasses import dataclass, field

from azure.storage.blob import BlobBlock, BlobClient, ContainerClient

from forwarder.samples.generator import HEAD, TAIL, BlobSpec, data_blocks


@dataclass
class _State:
    generation: int
    blocks: list[bytes]  # every data block the spec will ever have
    committed: list[BlobBlock] = field(default_factory=list)  # data blocks in the committed list


class AzureWriter:
    """Simulated Network Watcher writer for one container."""

    def __init__(self, container: ContainerClient):
        self.container = container
        self.blocks_committed: dict[str, int] = {}  # blob name -> data blocks in its committed list
        self.commits = 0  # block-list commits so far (each one is a new etag)
        self._state: dict[str, _State] = {}
        self._generations: dict[str, int] = {}

    def _blob(self, spec: BlobSpec) -> BlobClient:
        return self.container.get_blob_client(spec.blob_name)

    @staticmethod
    def _id(generation: int, kind: str, n: int) -> str:
        # Block ids inside one blob must all have the same length; the SDK base64-encodes them.
        return f"g{generation:03d}-{kind}-{n:05d}"

    def _commit(self, spec: BlobSpec, st: _State) -> None:
        head = BlobBlock(self._id(st.generation, "head", 0))
        tail = BlobBlock(self._id(st.generation, "tail", 0))
        self._blob(spec).commit_block_list([head, *st.committed, tail])
        self.blocks_committed[spec.blob_name] = len(st.committed)
        self.commits += 1

    def start(self, spec: BlobSpec, blocks: list[bytes] | None = None) -> None:
        """Create (or replace) the blob with only its head and tail, like Azure at the start of an hour."""
        generation = self._generations.get(spec.blob_name, 0) + 1
        self._generations[spec.blob_name] = generation
        st = _State(generation, blocks if blocks is not None else list(data_blocks(spec)))
        blob = self._blob(spec)
        blob.stage_block(self._id(generation, "head", 0), HEAD)
        blob.stage_block(self._id(generation, "tail", 0), TAIL)
        self._state[spec.blob_name] = st
        self._commit(spec, st)

    def append_minute(self, spec: BlobSpec) -> bool:
        """Stage the next data block and re-commit with it before the tail. False if the spec has no more minutes."""
        st = self._state.get(spec.blob_name)
        if st is None:
            self.start(spec)
            st = self._state[spec.blob_name]
        n = len(st.committed)
        if n >= len(st.blocks):
            return False
        block_id = self._id(st.generation, "data", n)
        self._blob(spec).stage_block(block_id, st.blocks[n])
        st.committed.append(BlobBlock(block_id))
        self._commit(spec, st)
        return True

    def tick(self, specs: list[BlobSpec]) -> int:
        """One minute for every blob in specs; returns how many of them grew."""
        return sum(self.append_minute(spec) for spec in specs)

    def write_all(self, spec: BlobSpec, minutes: int | None = None) -> None:
        """Head, the first ``minutes`` data blocks (all by default) and tail, in a single commit."""
        self.start(spec)
        st = self._state[spec.blob_name]
        count = len(st.blocks) if minutes is None else min(minutes, len(st.blocks))
        blob = self._blob(spec)
        for n in range(len(st.committed), count):
            block_id = self._id(st.generation, "data", n)
            blob.stage_block(block_id, st.blocks[n])
            st.committed.append(BlobBlock(block_id))
        self._commit(spec, st)

    def rewrite(self, spec: BlobSpec, minutes: int) -> None:
        """Rewrite the blob from scratch with fresh block ids and its first ``minutes`` data blocks.

        Pass ``dataclasses.replace(spec, seed=...)`` for different bytes under the same name.
        """
        self.write_all(spec, minutes)

    def delete(self, spec: BlobSpec) -> None:
        """Delete the blob, as retention does."""
        self._blob(spec).delete_blob()
        self._state.pop(spec.blob_name, None)
        self.blocks_committed.pop(spec.blob_name, None)

    def committed_bytes(self, spec: BlobSpec) -> bytes:
        """What the blob holds now according to this writer: head, committed data blocks, tail."""
        st = self._state[spec.blob_name]
        return HEAD + b"".join(st.blocks[: len(st.committed)]) + TAIL
