"""Write the seed corpus of the compiled core's fuzzer (csrc/fuzz/corpus/) from the test suite's inputs.

Seeds: the golden PT1H.json files, the damaged blobs of tests/support/fuzz.py, and mutated tuples of each
layout (tests/test_core_equivalence.py), each behind the harness's first byte (layout and format).
The corpus is committed; .ci/run fuzzes from it and runs every file in it as a regression.
Run after changing those inputs: python tools/fuzz_seeds.py
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.fuzz import iter_cases  # noqa: E402
from tests.test_core_equivalence import _mutated_tuples  # noqa: E402

CORPUS = ROOT / "csrc" / "fuzz" / "corpus"
LAYOUTS = {("nsg", 1): 0, ("nsg", 2): 1, ("vnet", 4): 2}
FORMATS = 4  # ECS, CEF, OCSF, ASIM: the harness's format is (first byte / 3) % 4


def selector(layout: int, fmt: int) -> bytes:
    return bytes([layout + 3 * fmt])


def write(data: bytes) -> None:
    (CORPUS / f"seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    for old in CORPUS.glob("seed-*"):
        old.unlink()
    rng = random.Random(20261125)
    for path in sorted((ROOT / "tests" / "golden").rglob("*.PT1H.json")):
        layout = 2 if "vnet" in path.name else 0 if "v1" in path.name else 1
        for fmt in range(FORMATS):
            write(selector(layout, fmt) + path.read_bytes())
    for n, (_, blob) in enumerate(iter_cases(20261125)):
        data = blob.bytes()
        layout = 2 if b"flowRecords" in data else 0 if b'"Version":1' in data else 1
        write(selector(layout, n % FORMATS) + data[:16384])
    for (kind, version), layout in LAYOUTS.items():
        for fmt in range(FORMATS):
            tuples = [t for t in _mutated_tuples(kind, version, rng, 40) if isinstance(t, str)]
            write(selector(layout, fmt) + "\n".join(tuples).encode())
    print(f"{len(list(CORPUS.iterdir()))} files in {CORPUS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
