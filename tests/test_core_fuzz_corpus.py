"""The fuzzer's corpus (csrc/fuzz/corpus: seeds, and any input that once crashed the core) as regressions.

.ci/run runs every file through the sanitizer-built harness; here each goes through the whole product both
ways (compiled core and reference), which must agree on events, lines and reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forwarder.samples.generator import HEAD, TAIL
from tests.support.core_paths import assert_same, both, needs_core
from tests.test_core_equivalence import _record

pytestmark = needs_core
CORPUS = Path(__file__).resolve().parents[1] / "csrc" / "fuzz" / "corpus"
LAYOUTS = [("nsg", 1), ("nsg", 2), ("vnet", 4)]


def _as_blob(data: bytes) -> bytes:
    """The harness reads flowTuples arrays where there are some, else one tuple per line: as a blob here."""
    text = data[1:]
    if b'"flowTuples":[' in text:
        return text
    kind, version = LAYOUTS[data[0] % 3]
    tuples = text.decode("utf-8", "surrogateescape").split("\n")
    record = json.dumps(_record(kind, version, tuples, 0), separators=(",", ":")).encode("utf-8", "surrogateescape")
    return HEAD + record + TAIL


@pytest.mark.parametrize("path", [p for p in sorted(CORPUS.iterdir()) if p.stat().st_size], ids=lambda p: p.name)
def test_corpus_input_gives_the_same_events_and_reports_both_ways(path: Path) -> None:
    data = path.read_bytes()
    compiled, reference = both(_as_blob(data))
    assert_same(compiled, reference)
