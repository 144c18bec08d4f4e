"""The compiled core at run time: which core is active is visible, and several threads share it safely."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import threading

from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.stream import FileConverter
from forwarder.formats import formatter
from forwarder.samples.generator import BlobSpec, blob_bytes
from tests.support.core_paths import needs_core, reference_only
from tests.support.events import validate_lines


def _version(**env: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "forwarder", "--version"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return out.stdout.strip()


def test_version_names_the_active_core() -> None:
    pure = _version(NSG_FORWARDER_PURE_PYTHON="1")
    assert pure == "nsg-forwarder 0.1.0 (core: pure Python, NSG_FORWARDER_PURE_PYTHON=1)"
    default = _version(NSG_FORWARDER_PURE_PYTHON="")
    if importlib.util.find_spec("forwarder._core") is not None:
        assert default == "nsg-forwarder 0.1.0 (core: compiled C)"
    else:
        assert default.startswith("nsg-forwarder 0.1.0 (core: pure Python")


def _convert(data: bytes, fmt: str) -> bytes:
    fmt_ = formatter(fmt)
    return b"".join(
        fmt_.format_joined(batch) for batch in FileConverter(io.BytesIO(data), "acct/c/b", IssueLog()).events()
    )


@needs_core
def test_threads_converting_at_once_get_what_one_thread_gets() -> None:
    blobs = [
        blob_bytes(BlobSpec(kind="nsg", version=2, minutes=1, tuples_per_minute=1100, ipv6_share=0.3, seed=1)),
        blob_bytes(BlobSpec(kind="vnet", version=4, minutes=1, tuples_per_minute=1100, ipv6_share=0.3, seed=2)),
    ]
    formats = ("ecs", "cef", "ocsf")
    with reference_only():
        expected = {(i, f): _convert(b, f) for i, b in enumerate(blobs) for f in formats}
    for (_, f), lines in expected.items():
        validate_lines(f, lines.decode().splitlines())
    got: dict[tuple[int, str, int], bytes] = {}
    errors: list[BaseException] = []

    def work(i: int, round_: int) -> None:
        try:
            for f in formats:
                got[(i, f, round_)] = _convert(blobs[i], f)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i % 2, i)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and all(not t.is_alive() for t in threads)
    for (i, f, _), data in got.items():
        assert data == expected[(i, f)]


@needs_core
def test_one_batch_formatted_by_two_threads_at_once_gives_the_same_lines() -> None:
    data = blob_bytes(BlobSpec(kind="nsg", version=2, minutes=1, tuples_per_minute=1100, ipv6_share=0.3))
    (batch,) = list(FileConverter(io.BytesIO(data), "acct/c/b", IssueLog()).events())
    want = formatter("ecs").format_many(batch)
    results: list[list[str]] = []

    def work() -> None:
        fmt = formatter("ecs")
        for _ in range(5):
            results.append(fmt.format_many(batch))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 15 and all(r == want for r in results)
    validate_lines("ecs", want)
