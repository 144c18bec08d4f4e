"""Flow aggregation: one event per key and clock-aligned window, for one blob.

A window holds the records Azure wrote in it (by the record's ``time``): the reader cuts chunks where
a record starts a new window, so a window's tuples come in whole chunks and a blob's checkpoint only
ever sits on a window boundary. A replay after a crash therefore starts a window from its first
record and rebuilds the same aggregates, with the same ids (from the blob, the window, its first
record's offset and the key's position in it). Data that arrives after its window was closed (a late
commit) forms a new instance of the window with its own first record, so nothing is counted twice.

The default key is Traffic Analytics': source and destination address, destination port, protocol,
direction, decision, rule and NSG / flow log; the source port is not part of it. Counters are summed
from the C and E tuples' deltas (B tuples carry none); NSG version 1 tuples have no counters, so their
aggregates count flows only.

This is the reference implementation. A window whose first batch is compiled (forwarder._core.Events) is
summed by the compiled core instead, with the same aggregates (forwarder/reduce/compiled.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from forwarder.flowlog.core import CoreEvents
from forwarder.flowlog.model import FlowContext, FlowEvent

if TYPE_CHECKING:
    from forwarder.reduce.compiled import CoreAccumulator

KEY_FIELDS = ("src_ip", "dst_ip", "src_port", "dst_port", "protocol", "direction", "decision", "rule",
              "resource", "mac")  # fmt: skip
DEFAULT_KEY = ("src_ip", "dst_ip", "dst_port", "protocol", "direction", "decision", "rule", "resource")
_MINUTE = 60_000


class AggregateConfigError(ValueError):
    """An aggregate table that cannot be used; the message names the key."""


@dataclass(frozen=True)
class AggregateSpec:
    window_ms: int
    key: tuple[str, ...] = DEFAULT_KEY

    def window_of(self, ms: int) -> int:
        return ms - ms % self.window_ms


def parse_window(raw: Any, where: str) -> int:
    """ "10m", "1h", 600 (seconds) -> milliseconds; the window must divide an hour (windows never span two blobs)."""
    text = str(raw).strip().lower()
    seconds: float
    if isinstance(raw, int) and not isinstance(raw, bool):
        seconds = raw
    elif text.endswith("m") and text[:-1].isdigit():
        seconds = int(text[:-1]) * 60
    elif text.endswith("h") and text[:-1].isdigit():
        seconds = int(text[:-1]) * 3600
    elif text.endswith("s") and text[:-1].isdigit():
        seconds = int(text[:-1])
    else:
        raise AggregateConfigError(f'{where}: {raw!r} is not a duration such as "10m", "1h" or 600 (seconds)')
    if seconds < 60 or 3600 % seconds or seconds % 60:
        raise AggregateConfigError(
            f"{where}: {raw!r} must be whole minutes that divide an hour (1m, 2m, 5m, 10m, 15m, 20m, 30m, 1h): "
            "a window never spans two hourly blobs"
        )
    return int(seconds * 1000)


def parse_spec(cfg: Mapping[str, Any], where: str) -> AggregateSpec:
    unknown = sorted(set(cfg) - {"window", "key"})
    if unknown:
        raise AggregateConfigError(f"{where}: unknown key {unknown[0]!r} (known: window, key)")
    if "window" not in cfg:
        raise AggregateConfigError(f'{where}.window: required, e.g. window = "10m"')
    window = parse_window(cfg["window"], f"{where}.window")
    key = cfg.get("key", list(DEFAULT_KEY))
    if not isinstance(key, list) or not key or not all(isinstance(k, str) for k in key):
        raise AggregateConfigError(f"{where}.key: expected a list of fields from {', '.join(KEY_FIELDS)}")
    bad = [k for k in key if k not in KEY_FIELDS]
    if bad:
        raise AggregateConfigError(f"{where}.key: {bad[0]!r} is not one of {', '.join(KEY_FIELDS)}")
    return AggregateSpec(window, tuple(k for k in KEY_FIELDS if k in key))


@dataclass(slots=True)
class Aggregate:
    """One key's flows in one window of one blob. Carries what sinks read of any event (``event_id``,
    ``timestamp_ms``, ``allowed``, ``ctx``); fields outside the key are None (or "")."""

    ctx: FlowContext  # the blob's context; record_offset = the window's first record; rule "" unless in the key
    event_id: str
    window_start_ms: int
    window_end_ms: int
    first_ms: int  # first and last flow time seen
    last_ms: int
    src_ip: str | None
    dst_ip: str | None
    src_port: int | None
    dst_port: int | None
    protocol: int | None
    inbound: bool | None
    decision: bool | None  # True allowed, False denied, None: both (decision not in the key)
    flows: int = 0
    started: int = 0
    continuing: int = 0
    ended: int = 0
    denied: int = 0
    packets_s2d: int | None = None
    bytes_s2d: int | None = None
    packets_d2s: int | None = None
    bytes_d2s: int | None = None

    @property
    def timestamp_ms(self) -> int:
        return self.first_ms

    @property
    def allowed(self) -> bool:
        return self.denied == 0

    @property
    def state(self) -> str:
        return ""


def _key_of(e: FlowEvent, fields: tuple[str, ...]) -> tuple[Any, ...]:
    out: list[Any] = []
    for f in fields:
        if f == "src_ip":
            out.append(e.src_ip)
        elif f == "dst_ip":
            out.append(e.dst_ip)
        elif f == "src_port":
            out.append(e.src_port)
        elif f == "dst_port":
            out.append(e.dst_port)
        elif f == "protocol":
            out.append(e.protocol)
        elif f == "direction":
            out.append(e.inbound)
        elif f == "decision":
            out.append(e.allowed)
        elif f == "rule":
            out.append(e.ctx.rule)
        elif f == "resource":
            out.append(e.ctx.name)
        else:
            out.append(e.ctx.mac)
    return tuple(out)


def _add(total: int | None, value: int | None) -> int | None:
    if value is None:
        return total
    return value if total is None else total + value


class WindowAggregator:
    """One window of one blob for one sink route: accumulates its chunks' events, hands out aggregates on close.

    ``first_offset`` is the byte offset of the window's first record: with the blob, the window and the
    key it makes the aggregate's id, the same when a replay reads the window again.
    """

    def __init__(self, spec: AggregateSpec, source: str, window_ms: int, first_offset: int):
        self.spec = spec
        self.source = source  # the blob's identity (storage account/container/blob name)
        self.window_ms = window_ms
        self.first_offset = first_offset
        self.flows = 0
        self._accs: dict[tuple[Any, ...], Aggregate] = {}
        self._core: CoreAccumulator | None = None  # the sums in C, when the window's first batch is compiled
        # Ids look like a tuple's: a prefix per window instance, then the key's position in it (keys come in the
        # order of the blob's bytes, the same in a replay). The key and window size are in the prefix, so that
        # two sinks aggregating differently never share an id.
        self._prefix = hashlib.blake2b(
            f"{source}\0{window_ms}\0{first_offset}\0{spec.window_ms}\0{','.join(spec.key)}".encode(), digest_size=12
        ).hexdigest()

    def add(self, events: Iterable[FlowEvent]) -> None:
        """Add (filtered) events of the window's records."""
        if self._core is None and not self._accs and type(events) is CoreEvents:
            # A window that starts with a compiled batch is summed in C (the batches that follow it are, too).
            from forwarder.reduce.compiled import CoreAccumulator  # imports this module

            self._core = CoreAccumulator(self.spec.key)
        if self._core is not None:
            batch = events if isinstance(events, Sequence) else list(events)
            self.flows += len(batch)
            self._core.add(batch)
            return
        fields = self.spec.key
        accs = self._accs
        for e in events:
            self.flows += 1
            key = _key_of(e, fields)
            acc = accs.get(key)
            if acc is None:
                acc = accs[key] = self._new(e, key)
            ts = e.timestamp_ms
            if ts < acc.first_ms:
                acc.first_ms = ts
            if ts > acc.last_ms:
                acc.last_ms = ts
            acc.flows += 1
            state = e.state
            if state == "B":
                acc.started += 1
            elif state == "C":
                acc.continuing += 1
            elif state == "E":
                acc.ended += 1
            if not e.allowed:
                acc.denied += 1
            if state != "B":  # a B tuple's counters are empty; C and E carry deltas since the previous tuple
                acc.packets_s2d = _add(acc.packets_s2d, e.packets_s2d)
                acc.bytes_s2d = _add(acc.bytes_s2d, e.bytes_s2d)
                acc.packets_d2s = _add(acc.packets_d2s, e.packets_d2s)
                acc.bytes_d2s = _add(acc.bytes_d2s, e.bytes_d2s)

    def _new(self, e: FlowEvent, key: tuple[Any, ...]) -> Aggregate:
        got = dict(zip(self.spec.key, key, strict=True))
        return self._aggregate(len(self._accs), self._window_ctx(e.ctx), e.timestamp_ms, got)

    def _window_ctx(self, ctx: FlowContext) -> FlowContext:
        """The context of an aggregate whose first flow has context ``ctx``: the window's first record, and
        the rule only when it is part of the key."""
        in_key = "rule" in self.spec.key
        return replace(
            ctx,
            record_offset=self.first_offset,
            rule=ctx.rule if in_key else "",
            acl_id=ctx.acl_id if in_key else "",
            id_prefix="",
        )

    def _aggregate(self, index: int, ctx: FlowContext, first_ms: int, got: Mapping[str, Any]) -> Aggregate:
        """The aggregate of the ``index``-th key, with its window context, first flow time and key fields."""
        return Aggregate(
            ctx=ctx,
            event_id=f"{self._prefix}-{index}",
            window_start_ms=self.window_ms,
            window_end_ms=self.window_ms + self.spec.window_ms,
            first_ms=first_ms,
            last_ms=first_ms,
            src_ip=got.get("src_ip"),
            dst_ip=got.get("dst_ip"),
            src_port=got.get("src_port"),
            dst_port=got.get("dst_port"),
            protocol=got.get("protocol"),
            inbound=got.get("direction"),
            decision=got.get("decision"),
        )

    def close(self) -> list[Aggregate]:
        """The window's aggregates, in the order their keys first appeared."""
        if self._core is not None:
            out = self._from_core(self._core.results())
            self._core = None
            return out
        out = list(self._accs.values())
        self._accs = {}
        return out

    def _from_core(self, rows: list[tuple[Any, ...]]) -> list[Aggregate]:
        out = []
        # Keys whose first flows share a rule group's context share its window context (the rows hold the
        # contexts, so their ids stay theirs): one replace() per rule group rather than per key.
        derived: dict[int, FlowContext] = {}
        for index, row in enumerate(rows):
            ctx, src_ip, dst_ip, src_port, dst_port, protocol, inbound, allowed, first_ms, last_ms, *counts = row
            window_ctx = derived.get(id(ctx))
            if window_ctx is None:
                window_ctx = derived[id(ctx)] = self._window_ctx(ctx)
            got = {"src_ip": src_ip, "dst_ip": dst_ip, "src_port": src_port, "dst_port": dst_port,
                   "protocol": protocol, "direction": inbound, "decision": allowed}  # fmt: skip
            acc = self._aggregate(index, window_ctx, first_ms, got)
            acc.last_ms = last_ms
            acc.flows, acc.started, acc.continuing, acc.ended, acc.denied = counts[:5]
            acc.packets_s2d, acc.bytes_s2d, acc.packets_d2s, acc.bytes_d2s = counts[5:]
            out.append(acc)
        return out


def record_time_ms(value: Any) -> int | None:
    """Epoch ms of a record's "time" ("2026-11-25T10:00:35.3899262Z"), None if it is not such a time."""
    if not isinstance(value, str) or len(value) < 19 or value[4] != "-" or value[10] not in "T ":
        return None
    try:
        y, mo, d = int(value[0:4]), int(value[5:7]), int(value[8:10])
        h, mi, s = int(value[11:13]), int(value[14:16]), int(value[17:19])
    except ValueError:
        return None
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        return None
    return (_days(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * 1000


def _days(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 (Howard Hinnant's days_from_civil): no datetime object per record."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def cut_ms(specs: Sequence[AggregateSpec]) -> int | None:
    """Where chunks must be cut so that every window of every spec starts on a cut: their gcd."""
    from math import gcd

    sizes = [s.window_ms // _MINUTE for s in specs]
    if not sizes:
        return None
    g = sizes[0]
    for n in sizes[1:]:
        g = gcd(g, n)
    return g * _MINUTE
