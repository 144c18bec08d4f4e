"""Seeded damage to generated PT1H.json blobs, with the event ids the undamaged records must still give.

A blob is kept as pieces (head, separators and garbage, records, tail) so that after any damage the
byte offset of every record that is still whole is known exactly, and with it the deterministic ids
of its events (event_id_prefix of source, offset, record time; then the tuple index).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from forwarder.flowlog.normalise import event_id_prefix
from forwarder.samples.generator import HEAD, TAIL, BlobSpec, data_blocks

LAYOUT_VERSIONS: list[tuple[str, int]] = [("nsg", 1), ("nsg", 2), ("vnet", 4)]


@dataclass(frozen=True)
class Rec:
    """One record as written; ``intact`` False once damage may have changed what it gives."""

    data: bytes
    time: str
    tuples: int
    intact: bool = True


@dataclass
class Blob:
    head: bytes
    items: list[bytes | Rec]  # in order: separators and garbage as bytes, records as Rec
    tail: bytes
    cut: int | None = None  # the file ends after this many bytes (truncation)
    prefix: bytes = b""  # before the head (a byte order mark)
    # Damage the decoder must report: (first, last) byte positions of each damaged stretch.
    damage: list[tuple[int, int]] = field(default_factory=list)
    head_damaged: bool = False
    tail_damaged: bool = False

    def layout(self) -> tuple[bytes, list[tuple[int, Rec]]]:
        """The bytes, and every record with its byte offset (records cut by a truncation are left out)."""
        out = bytearray(self.prefix + self.head)
        placed: list[tuple[int, Rec]] = []
        for item in self.items:
            if isinstance(item, Rec):
                placed.append((len(out), item))
                out += item.data
            else:
                out += item
        out += self.tail
        data = bytes(out)
        if self.cut is not None:
            data = data[: self.cut]
            placed = [(o, r if o + len(r.data) <= self.cut else replace(r, intact=False)) for o, r in placed]
            placed = [(o, r) for o, r in placed if o < self.cut]
        return data, placed

    def bytes(self) -> bytes:
        return self.layout()[0]

    @property
    def total_tuples(self) -> int:
        return sum(r.tuples for r in self.items if isinstance(r, Rec))


def ids_of(source: str, offset: int, rec: Rec) -> list[str]:
    prefix = event_id_prefix(source, offset, rec.time)
    return [f"{prefix}-{i}" for i in range(rec.tuples)]


def expected_ids(blob: Blob, source: str, *, whole: bool = True) -> set[str]:
    """Ids every intact record must give. ``whole`` False: the last record may be held back (no tail yet)."""
    _, placed = blob.layout()
    intact = [(o, r) for o, r in placed if r.intact]
    if not whole and intact and intact[-1] == placed[-1]:
        intact = intact[:-1]
    return {i for o, r in intact for i in ids_of(source, o, r)}


def intact_spans(blob: Blob) -> list[tuple[int, int]]:
    _, placed = blob.layout()
    return [(o, o + len(r.data)) for o, r in placed if r.intact]


def _count_tuples(body: dict[str, Any]) -> int:
    if "flowRecords" in body:
        return sum(len(g["flowTuples"]) for a in body["flowRecords"]["flows"] for g in a["flowGroups"])
    return sum(len(m["flowTuples"]) for r in body["properties"]["flows"] for m in r["flows"])


def clean_blob(spec: BlobSpec) -> Blob:
    items: list[bytes | Rec] = []
    for block in data_blocks(spec):
        body_bytes = block[1:] if block.startswith(b",") else block
        if block.startswith(b","):
            items.append(b",")
        body = json.loads(body_bytes)
        items.append(Rec(body_bytes, body["time"], _count_tuples(body)))
    return Blob(HEAD, items, TAIL)


def small_spec(rng: random.Random, minutes: int = 6, tuples: int = 5, mac: str = "000D3AF87856") -> BlobSpec:
    kind, version = rng.choice(LAYOUT_VERSIONS)
    return BlobSpec(
        kind=kind,  # type: ignore[arg-type]
        version=version,
        minutes=minutes,
        tuples_per_minute=tuples,
        seed=rng.randrange(1 << 30),
        mac=mac,
    )


def _record_indexes(blob: Blob) -> list[int]:
    return [i for i, item in enumerate(blob.items) if isinstance(item, Rec)]


def _positions(blob: Blob) -> list[int]:
    """Start position of every item in the assembled blob."""
    pos = len(blob.prefix) + len(blob.head)
    out = []
    for item in blob.items:
        out.append(pos)
        pos += len(item.data if isinstance(item, Rec) else item)
    return out


# ---- garbage -------------------------------------------------------------------------------------

GARBAGE: dict[str, Callable[[random.Random], bytes]] = {
    "invalid utf-8": lambda r: bytes(r.choice(b"\x80\xbf\xc3\xe2\xf0\xfe\xff") for _ in range(r.randint(1, 9))),
    "nul bytes": lambda r: b"\x00" * r.randint(1, 4096),
    "huge number": lambda r: b"9" * r.randint(5000, 50000),
    "deep arrays": lambda r: b"[" * 100_000 + b"]" * 100_000,
    "deep objects": lambda r: b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "long string": lambda r: b'"' + b"x" * r.randint(100_000, 300_000) + b'"',
    "unterminated string": lambda r: b'"' + b"y" * r.randint(10, 5000),
    "lone brace": lambda r: r.choice([b"{", b"}", b"[", b"]", b"{{", b'{"time":']),
    "random bytes": lambda r: r.randbytes(r.randint(1, 200)),
    "json scalars": lambda r: r.choice([b"null", b"true", b"1e999", b"-0", b'"text"', b"[1,2]", b"NaN", b"Infinity"]),
}


def insert_between(blob: Blob, rng: random.Random, garbage: bytes) -> Blob:
    """Garbage between two records (before or after the comma): no record is damaged."""
    b = copy.deepcopy(blob)
    recs = _record_indexes(b)
    k = rng.randrange(len(recs))
    at = recs[k] + 1
    if at < len(b.items) and not isinstance(b.items[at], Rec) and rng.random() < 0.5:
        # After the comma: the next record loses its ',{"time":' marker.
        b.items[at : at + 1] = [b.items[at], garbage]  # type: ignore[list-item]
        where = at + 1
    else:
        b.items.insert(at, garbage)
        where = at
    pos = _positions(b)[where]
    b.damage.append((pos, pos + len(garbage)))
    return b


def insert_inside(blob: Blob, rng: random.Random, garbage: bytes) -> Blob:
    """Garbage inside one record: that record is damaged, the rest must come out."""
    b = copy.deepcopy(blob)
    k = rng.choice(_record_indexes(b))
    rec = b.items[k]
    assert isinstance(rec, Rec)
    at = rng.randrange(1, len(rec.data) - 1)
    b.items[k] = replace(rec, data=rec.data[:at] + garbage + rec.data[at:], intact=False)
    start = _positions(b)[k]
    b.damage.append((start, start + len(rec.data) + len(garbage)))
    return b


def flip_bytes(blob: Blob, rng: random.Random, n: int) -> Blob:
    """Change n bytes anywhere; a changed byte damages the record (or separator before it) that holds it."""
    b = copy.deepcopy(blob)
    data, _ = b.layout()
    positions = sorted(rng.sample(range(len(data)), min(n, len(data))))
    starts = _positions(b)
    head_end = len(b.prefix) + len(b.head)
    tail_start = len(data) - len(b.tail)
    for p in positions:
        new = rng.choice([x for x in range(256) if x != data[p]])
        if p < head_end:
            b.head = _patched(b.head, p - len(b.prefix), new)
            b.head_damaged = True
            recs = _record_indexes(b)
            if recs:
                first = b.items[recs[0]]
                assert isinstance(first, Rec)
                b.items[recs[0]] = replace(first, intact=False)
            continue
        if p >= tail_start:
            b.tail = _patched(b.tail, p - tail_start, new)
            b.tail_damaged = True
            continue
        k = max(i for i, s in enumerate(starts) if s <= p)
        item = b.items[k]
        if isinstance(item, Rec):
            b.items[k] = replace(item, data=_patched(item.data, p - starts[k], new), intact=False)
            b.damage.append((starts[k], starts[k] + len(item.data)))
        else:
            b.items[k] = _patched(item, p - starts[k], new)
            nxt = k + 1
            if nxt < len(b.items) and isinstance(b.items[nxt], Rec):
                rec = b.items[nxt]
                assert isinstance(rec, Rec)
                b.items[nxt] = replace(rec, intact=False)
            b.damage.append((starts[k], starts[k] + len(item) + 1))
    return b


def _patched(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + bytes([value]) + data[at + 1 :]


def truncate(blob: Blob, cut: int) -> Blob:
    b = copy.deepcopy(blob)
    b.cut = cut
    data, placed = b.layout()
    cut_recs = [(o, r) for o, r in placed if not r.intact]
    b.damage.extend((o, len(data)) for o, _ in cut_recs)
    return b


def truncation_points(blob: Blob, rng: random.Random) -> dict[str, int]:
    """One cut of each kind: in the head, at record boundaries, inside strings, numbers, keys, after an
    inner ']}' (which looks like a tail), inside the tail."""
    data, placed = blob.layout()
    head_end = len(blob.prefix) + len(blob.head)
    o, r = placed[len(placed) // 2]
    inner = r.data
    points = {
        "inside head": rng.randrange(1, head_end),
        "after head": head_end,
        "at a record start": o,
        "after a record's opening brace": o + 1,
        "inside a key": o + inner.index(b'"time"') + 3,
        "inside a value string": o + inner.index(b'"time":"') + 12,
        "after a record": o + len(inner),
        "after a record's comma": o + len(inner) + 1,
        "inside a tuple list": o + inner.index(b'"flowTuples":["') + 20,
        "after an inner ]}": o + inner.index(b"]}") + 2,
        "after an inner ]}]}": o + inner.index(b"]}]}") + 4,
        "inside the tail": len(data) - 1,
        "random": rng.randrange(head_end, len(data)),
    }
    if b'"Version":' in inner:
        points["inside a number"] = o + inner.index(b'"Version":') + 10
    return points


# ---- records of the wrong shape --------------------------------------------------------------------


def _groups(body: dict[str, Any]) -> list[dict[str, Any]]:
    if "flowRecords" in body:
        return [g for a in body["flowRecords"]["flows"] for g in a["flowGroups"]]
    return [m for r in body["properties"]["flows"] for m in r["flows"]]


def _set_all_null(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: None for k in node}
    return None


SHAPES: dict[str, Callable[[dict[str, Any], random.Random], None]] = {
    "flowTuples a number": lambda b, r: _groups(b)[0].__setitem__("flowTuples", r.choice([5, 0, -1, 1e308, 12.5])),
    "flowTuples a string": lambda b, r: _groups(b)[0].__setitem__("flowTuples", "1542110377,10.0.0.4,x"),
    "flowTuples an object": lambda b, r: _groups(b)[0].__setitem__("flowTuples", {"a": "b"}),
    "flowTuples null": lambda b, r: _groups(b)[0].__setitem__("flowTuples", None),
    "tuples of other types": lambda b, r: _groups(b)[0].__setitem__("flowTuples", [None, 7, [], {}, True, "\ud800"]),
    "a tuple with a lone surrogate": lambda b, r: _groups(b)[0]["flowTuples"].append(
        "1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A\ud800"
    ),
    "flows a string": lambda b, r: (b.get("properties") or b["flowRecords"]).__setitem__("flows", "flows"),
    "flows a number": lambda b, r: (b.get("properties") or b["flowRecords"]).__setitem__("flows", 42),
    "flows null": lambda b, r: (b.get("properties") or b["flowRecords"]).__setitem__("flows", None),
    "flows of nulls": lambda b, r: (b.get("properties") or b["flowRecords"]).__setitem__("flows", [None, 1, "x"]),
    "every top-level value null": lambda b, r: b.update(_set_all_null(b)),
    "properties null": lambda b, r: b.update({"properties": None, "flowRecords": None}),
    "context values of odd types": lambda b, r: b.update(
        {"time": {"a": 1}, "macAddress": [1, 2], "resourceId": 5, "flowLogResourceID": None, "category": 1.5}
    ),
    "rule and mac with lone surrogates": lambda b, r: _set_rule_mac(b, "R\ud800\udfff", "\udcff" * 12),
    "rule null, mac not hex": lambda b, r: _set_rule_mac(b, None, "ZZZZZZZZZZZZ"),
    "version true": lambda b, r: _set_version(b, True),
    "version a string": lambda b, r: _set_version(b, "4" if "flowRecords" in b else "2"),
    "huge counters": lambda b, r: _groups(b)[0]["flowTuples"].append(_huge_counter_tuple(b)),
}


def _set_version(body: dict[str, Any], value: Any) -> None:
    if "flowRecords" in body:
        body["flowLogVersion"] = value
    else:
        body["properties"]["Version"] = value


def _set_rule_mac(body: dict[str, Any], rule: Any, mac: Any) -> None:
    if "flowRecords" in body:
        body["flowRecords"]["flows"][0]["flowGroups"][0]["rule"] = rule
        body["macAddress"] = mac
    else:
        body["properties"]["flows"][0]["rule"] = rule
        body["properties"]["flows"][0]["flows"][0]["mac"] = mac


def _huge_counter_tuple(body: dict[str, Any]) -> str:
    if "flowRecords" in body:
        return "1700000000000,10.0.0.4,13.67.143.118,44931,443,6,O,C,X,1,99999999999999999999999,1,1"
    if body["properties"]["Version"] == 1:
        return "1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A"
    return "1542110377,10.0.0.4,13.67.143.118,44931,443,T,O,A,C,1,99999999999999999999999,1,1"


def reshape(blob: Blob, rng: random.Random, shape: str) -> Blob:
    """One record rewritten with a field of the wrong type (the record is damaged, JSON stays valid)."""
    b = copy.deepcopy(blob)
    k = rng.choice(_record_indexes(b))
    rec = b.items[k]
    assert isinstance(rec, Rec)
    body = json.loads(rec.data)
    SHAPES[shape](body, rng)
    b.items[k] = replace(rec, data=json.dumps(body, separators=(",", ":")).encode(), intact=False)
    return b


# ---- unusual but valid layouts ----------------------------------------------------------------------


def pretty(blob: Blob, crlf: bool) -> Blob:
    """Every record pretty-printed, one per line: what a person or a tool saving JSON writes."""
    nl = b"\r\n" if crlf else b"\n"
    items: list[bytes | Rec] = []
    for item in blob.items:
        if isinstance(item, Rec):
            text = json.dumps(json.loads(item.data), indent=2).encode().replace(b"\n", nl)
            items.append(replace(item, data=text))
        else:
            items.append(item + nl)
    return Blob(b"{" + nl + b'  "records": [' + nl, items, nl + b"  ]" + nl + b"}" + nl)


def with_bom(blob: Blob) -> Blob:
    b = copy.deepcopy(blob)
    b.prefix = b"\xef\xbb\xbf"
    return b


def iter_cases(seed: int) -> Iterator[tuple[str, Blob]]:
    """Named damaged blobs, the same every run for one seed."""
    rng = random.Random(seed)
    n = 0

    def spec() -> BlobSpec:
        nonlocal n
        n += 1
        return small_spec(rng, mac=f"000D3A{n:06X}")

    for name, make in GARBAGE.items():
        yield f"garbage between records: {name}", insert_between(clean_blob(spec()), rng, make(rng))
        yield f"garbage inside a record: {name}", insert_inside(clean_blob(spec()), rng, make(rng))
    for shape in SHAPES:
        yield f"record shape: {shape}", reshape(clean_blob(spec()), rng, shape)
    base = clean_blob(spec())
    for where, cut in truncation_points(base, rng).items():
        yield f"truncated {where}", truncate(base, cut)
    for i in range(12):
        yield f"byte flips #{i}", flip_bytes(clean_blob(spec()), rng, rng.choice([1, 1, 2, 5]))
    yield "pretty-printed", pretty(clean_blob(spec()), crlf=False)
    yield "pretty-printed with CRLF", pretty(clean_blob(spec()), crlf=True)
    yield "byte order mark", with_bom(clean_blob(spec()))
    dup_head = clean_blob(spec())
    dup_head.head = HEAD + HEAD
    dup_head.damage.append((len(HEAD), 2 * len(HEAD)))
    yield "duplicated head", dup_head
    dup_tail = clean_blob(spec())
    dup_tail.tail = TAIL + TAIL
    yield "duplicated tail", dup_tail
    no_tail = clean_blob(spec())
    no_tail.tail = b""
    yield "missing tail", no_tail
    yield "head and tail only", Blob(HEAD, [], TAIL)
    yield "empty", Blob(b"", [], b"")
    no_head = clean_blob(spec())
    no_head.head = b""
    no_head.head_damaged = True  # a reader learns the data's start from the head: without one it reports the blob
    yield "missing head", no_head
    spaced = clean_blob(spec())
    spaced.items = [b" ,\n " if isinstance(i, bytes) else i for i in spaced.items]
    yield "blanks around commas", spaced


def write_case(root: Path, blob: Blob, spec_mac: str, hour: int = 10) -> tuple[Path, str]:
    """Write a damaged blob where a directory source finds it; returns its path and its source key."""
    spec = BlobSpec(mac=spec_mac)
    name = spec.blob_name.replace("/h=10/", f"/h={hour:02d}/")
    path = root / spec.container / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob.bytes())
    return path, f"local/{spec.container}/{name}"
