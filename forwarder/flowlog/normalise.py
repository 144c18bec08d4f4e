"""Pure functions from a flow-log record to FlowEvents: NSG versions 1 and 2, VNet version 4.

This is the hot path (a million tuples a second is the goal), hence the unrolled loops, the
caches of validated addresses and timestamps, and one FlowContext per rule group.
"""

from __future__ import annotations

import hashlib
import ipaddress
import reprlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import orjson

from forwarder.flowlog.bigrecord import TupleSpan
from forwarder.flowlog.core import core
from forwarder.flowlog.issues import IssueLog, ParseIssue, excerpt
from forwarder.flowlog.model import FlowContext, FlowEvent, LogKind, utf8_safe
from forwarder.flowlog.records import Record

NSG_VERSIONS = (1, 2)
VNET_VERSIONS = (4,)
_NSG_PROTOCOLS = {"T": 6, "U": 17}
_NSG_STATES = frozenset("BCE")
_VNET_STATES = frozenset("BCED")

_ip_cache: dict[str, int] = {}
_IP_CACHE_MAX = 32_768


def ip_version(addr: str) -> int:
    """4 or 6 for a valid address, 0 otherwise; cached because flows repeat their addresses."""
    v = _ip_cache.get(addr)
    if v is None:
        try:
            # Zone ids (fe80::1%eth0) are refused: Elasticsearch rejects them and they cannot be hashed.
            v = 0 if "%" in addr else ipaddress.ip_address(addr).version
        except ValueError:
            v = 0
        if len(_ip_cache) >= _IP_CACHE_MAX:
            _ip_cache.clear()
        _ip_cache[addr] = v
    return v


def event_id_prefix(source: str, record_offset: int, record_time: str) -> str:
    """Stable per record: the same bytes read again give the same ids, so replays can be de-duplicated.

    The record's own time is mixed in so that a blob rewritten with other records at the same offsets
    gets other ids: otherwise Elasticsearch would drop the new flows as duplicates of the old ones.
    """
    return hashlib.blake2b(f"{source}\0{record_offset}\0{record_time}".encode(), digest_size=12).hexdigest()


_HEX = frozenset("0123456789ABCDEF")


def format_mac(raw: str) -> str:
    hexdigits = "".join(c for c in raw if c not in ":-").upper()
    if len(hexdigits) != 12 or not _HEX.issuperset(hexdigits):
        return ""
    return "-".join(hexdigits[i : i + 2] for i in range(0, 12, 2))


def parse_resource_id(resource_id: str) -> dict[str, str]:
    """'/SUBSCRIPTIONS/x/RESOURCEGROUPS/y/PROVIDERS/ns/TYPE/name/...' to lower-cased type -> name pairs."""
    parts = [p for p in resource_id.split("/") if p]
    out: dict[str, str] = {}
    for i in range(0, len(parts) - 1, 2):
        out[parts[i].lower()] = parts[i + 1]
    return out


def text(value: Any) -> str:
    """A context string fit for every format: bytes that were not UTF-8 (kept as lone surrogates so that
    byte offsets stay exact) become U+FFFD here, once per record, instead of failing a JSON encoder."""
    if value is None:
        return ""
    return utf8_safe(value if isinstance(value, str) else str(value))


# What a bad record or tuple is shown as in a message: bounded in size and depth, whatever the input.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxstring, _REPR.maxother = 3, 8, 4, 80, 80


def shown(value: Any) -> str:
    """A value from a record as JSON text, in its own key order (a Python repr would sort and respell it)."""
    if isinstance(value, str):
        return excerpt(value)
    try:
        return excerpt(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):  # integers beyond 64 bits, nesting beyond orjson's limit
        return excerpt(_REPR.repr(value))


class UnknownRecord(ValueError):
    """A record that is neither an NSG nor a VNet flow log record of a known version."""


class BadStructure(TypeError):
    """A flow log record with a part of the wrong JSON type where nothing of the record can be read."""


def record_kind(body: dict[str, Any]) -> tuple[LogKind, int]:
    if "flowRecords" in body or "flowLogVersion" in body:
        version = body.get("flowLogVersion")
        if version not in VNET_VERSIONS or isinstance(version, bool):
            raise UnknownRecord(f"unknown VNet flow log version {version!r} (known: 4)")
        return "vnet", int(version)
    props = body.get("properties")
    if isinstance(props, dict) and "flows" in props:
        version = props.get("Version")
        if version not in NSG_VERSIONS or isinstance(version, bool):
            raise UnknownRecord(f"unknown NSG flow log version {version!r} (known: 1, 2)")
        return "nsg", int(version)
    raise UnknownRecord("not a flow log record (no properties.flows and no flowRecords)")


class Normaliser:
    """Turns records of one source into FlowEvents, reporting bad tuples to ``issues``."""

    def __init__(self, source: str, issues: IssueLog):
        self.source = source
        self.issues = issues

    def events(self, record: Record) -> list[FlowEvent]:
        """All events of a record at once (small records, tests, convert)."""
        return [e for batch in self.batches(record, 1 << 62) for e in batch]

    def records_batches(self, records: Iterable[Record], size: int) -> Iterator[Sequence[FlowEvent]]:
        """The events of many records, in batches of at most ``size`` (never mixing two records)."""
        for record in records:
            yield from self.batches(record, size)
            # A big record's text is referenced from its body: let it go before the next one is read.
            del record

    def batches(self, record: Record, size: int) -> Iterator[Sequence[FlowEvent]]:
        """The events of a record in batches of at most ``size``: one minute of a busy NIC can hold
        hundreds of thousands of tuples, and holding them all at once would cost hundreds of MB.

        With the compiled core a batch is a forwarder._core.Events (columns; a FlowEvent is built only
        when one is looked at), otherwise a list; both hold the same events."""
        body = record.body
        try:
            kind, version = record_kind(body)
            groups, problems = self._nsg_groups(body) if kind == "nsg" else self._vnet_groups(body)
        except (UnknownRecord, TypeError, KeyError, AttributeError) as exc:
            self.issues.report(
                ParseIssue(
                    self.source,
                    record.offset,
                    "unsupported record",
                    detail=str(exc) if isinstance(exc, UnknownRecord | BadStructure) else f"unexpected: {exc!r}",
                    record_index=record.index,
                    text=excerpt(record.head) if record.head else shown(body),
                )
            )
            return
        for problem in problems:
            self.issues.report(
                ParseIssue(self.source, record.offset, "bad flow group", detail=problem, record_index=record.index)
            )
        resource_id = text(body.get("resourceId") or body.get("flowLogResourceID"))
        rid = parse_resource_id(resource_id)
        target = text(body.get("targetResourceID"))
        if kind == "nsg":
            name = rid.get("networksecuritygroups", "")
            group = rid.get("resourcegroups", "")
        else:
            name = rid.get("flowlogs", "")
            group = parse_resource_id(target).get("resourcegroups") or rid.get("resourcegroups", "")
        prefix = event_id_prefix(self.source, record.offset, str(body.get("time", "")))
        common = {
            "kind": kind,
            "version": version,
            "source": self.source,
            "record_offset": record.offset,
            "record_time": text(body.get("time")),
            "resource_id": resource_id,
            "subscription_id": rid.get("subscriptions", "").lower(),
            "resource_group": group,
            "name": name,
            "category": text(body.get("category")),
            "operation_name": text(body.get("operationName")),
            "system_id": text(body.get("systemId")),
            "target_resource_id": target,
            "flow_log_guid": text(body.get("flowLogGUID")),
            "id_prefix": prefix,
        }
        record_mac = text(body.get("macAddress"))
        parse = _GROUP_PARSERS[(kind, version)]
        layout = _LAYOUTS[(kind, version)]
        out: Any = core.Events() if core is not None else []
        index = 0
        for rule, mac, acl_id, tuples in groups:
            ctx = FlowContext(mac=format_mac(text(mac) or record_mac), rule=text(rule), acl_id=text(acl_id), **common)  # type: ignore[arg-type]
            for start in range(0, len(tuples), size):
                count = min(size, len(tuples) - start)
                if out and len(out) + count > size:
                    yield out
                    out = core.Events() if core is not None else []
                if core is None:
                    part = tuples[start : start + size] if len(tuples) > size else tuples
                    bad = parse(ctx, index + start, part, out)
                else:
                    bad = _core_part(ctx, layout, parse, index, tuples, start, count, out)
                for bad_index, raw in bad:
                    self.issues.report(
                        ParseIssue(
                            self.source,
                            record.offset,
                            "bad flow tuple",
                            detail=f"tuple {bad_index}: {explain_tuple(kind, version, raw)}",
                            record_index=record.index,
                            text=shown(raw),
                        )
                    )
                if len(out) >= size:
                    yield out
                    out = core.Events() if core is not None else []
            index += len(tuples)
        if out:
            yield out

    @staticmethod
    def _nsg_groups(body: dict[str, Any]) -> tuple[list[_Group], list[str]]:
        groups: list[_Group] = []
        problems: list[str] = []
        for where, rule_flows in _objects(body["properties"]["flows"], "properties.flows", problems, whole=True):
            for inner, mac_flows in _objects(rule_flows.get("flows", []), f"{where}.flows", problems):
                tuples = _array(mac_flows.get("flowTuples", []), f"{inner}.flowTuples", problems)
                groups.append((rule_flows.get("rule"), mac_flows.get("mac"), None, tuples))
        return groups, problems

    @staticmethod
    def _vnet_groups(body: dict[str, Any]) -> tuple[list[_Group], list[str]]:
        groups: list[_Group] = []
        problems: list[str] = []
        flow_records = body["flowRecords"]
        if not isinstance(flow_records, dict):
            raise BadStructure(f"flowRecords is {_kind(flow_records)}, not an object")
        for where, acl in _objects(flow_records.get("flows", []), "flowRecords.flows", problems, whole=True):
            for inner, group in _objects(acl.get("flowGroups", []), f"{where}.flowGroups", problems):
                tuples = _array(group.get("flowTuples", []), f"{inner}.flowTuples", problems)
                groups.append((group.get("rule"), None, acl.get("aclID"), tuples))
        return groups, problems


def _objects(value: Any, where: str, problems: list[str], whole: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, object) for each object of a JSON array of the record; other items are problems. ``whole``: the
    record's own list of groups, which if it is not an array leaves nothing of the record to read (an error)."""
    for i, item in enumerate(_array(value, where, None if whole else problems)):
        path = f"{where}[{i}]"
        if isinstance(item, dict):
            yield path, item
        else:
            problems.append(f"{path} is {_kind(item)}, not an object")


# One rule group: rule, NIC MAC (NSG), ACL id (VNet), its tuples. Values as written: checked where used.
_Group = tuple[Any, Any, Any, "list[Any] | TupleSpan"]


_JSON_TYPES: dict[type, str] = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
}


def _kind(value: Any) -> str:
    """The JSON type of a parsed value, as a user reading the record would name it."""
    return "null" if value is None else _JSON_TYPES.get(type(value), f"a {type(value).__name__}")


def _array(value: Any, where: str, problems: list[str] | None = None) -> list[Any] | TupleSpan:
    """A JSON array of the record; anything else, null included, is a problem (an error for the record when
    ``problems`` is None: nothing of it can be read). Callers pass [] for an array that is absent."""
    if type(value) is list or type(value) is TupleSpan:
        return value
    problem = f"{where} is {_kind(value)}, not an array"
    if problems is None:
        raise BadStructure(problem)
    problems.append(problem)
    return []


# The group parsers are the innermost loop: checks are inlined, and a tuple that fails any of them
# is handed back so that explain_tuple (slow, thorough) can say what was wrong with it.
_BadTuples = list[tuple[int, Any]]


def _nsg_group(ctx: FlowContext, index: int, tuples: Iterable[Any], out: list[FlowEvent], v2: bool) -> _BadTuples:
    bad: _BadTuples = []
    prefix = ctx.id_prefix + "-"
    ipc = _ip_cache
    protos = _NSG_PROTOCOLS
    states = _NSG_STATES
    append = out.append
    make = tuple.__new__  # skips NamedTuple.__new__, a Python-level call per tuple
    for i, raw in enumerate(tuples, index):
        try:
            f = raw.split(",")
            if v2:
                ts, src, dst, sport, dport, proto, direction, decision, state, p1, b1, p2, b2 = f
                if state not in states:
                    raise ValueError
            else:
                ts, src, dst, sport, dport, proto, direction, decision = f
                state = p1 = b1 = p2 = b2 = ""
            sp = int(sport)
            dp = int(dport)
            family = ipc.get(src) or ip_version(src)
            if (
                not family
                or family != (ipc.get(dst) or ip_version(dst))
                or not 0 <= sp <= 65535
                or not 0 <= dp <= 65535
                or direction not in ("I", "O")
                or decision not in ("A", "D")
                or not ts.isdigit()
                or len(ts) > 11  # beyond year 5000: no valid RFC 3339 time downstream
            ):
                raise ValueError
            counters = p1 + b1 + p2 + b2
            if counters and (
                not counters.isdigit()
                # Beyond 18 digits a counter overflows the 64-bit integers of every format.
                or (len(counters) > 18 and (len(b1) > 18 or len(b2) > 18 or len(p1) > 18 or len(p2) > 18))
            ):
                raise ValueError
            append(
                make(
                    FlowEvent,
                    (
                        ctx,
                        prefix + str(i),
                        int(ts) * 1000,
                        src,
                        dst,
                        sp,
                        dp,
                        protos[proto],
                        direction == "I",
                        decision == "A",
                        state,
                        "",
                        int(p1) if p1 else None,
                        int(b1) if b1 else None,
                        int(p2) if p2 else None,
                        int(b2) if b2 else None,
                    ),
                )
            )
        except (ValueError, TypeError, AttributeError, KeyError):
            bad.append((i, raw))
    return bad


def _nsg_v1(ctx: FlowContext, index: int, tuples: Iterable[Any], out: list[FlowEvent]) -> _BadTuples:
    return _nsg_group(ctx, index, tuples, out, v2=False)


def _nsg_v2(ctx: FlowContext, index: int, tuples: Iterable[Any], out: list[FlowEvent]) -> _BadTuples:
    return _nsg_group(ctx, index, tuples, out, v2=True)


def _vnet_v4(ctx: FlowContext, index: int, tuples: Iterable[Any], out: list[FlowEvent]) -> _BadTuples:
    bad: _BadTuples = []
    prefix = ctx.id_prefix + "-"
    ipc = _ip_cache
    states = _VNET_STATES
    append = out.append
    make = tuple.__new__  # skips NamedTuple.__new__, a Python-level call per tuple
    for i, raw in enumerate(tuples, index):
        try:
            ts, src, dst, sport, dport, proto, direction, state, enc, p1, b1, p2, b2 = raw.split(",")
            sp = int(sport)
            dp = int(dport)
            pr = int(proto)
            family = ipc.get(src) or ip_version(src)
            if (
                not family
                or family != (ipc.get(dst) or ip_version(dst))
                or not 0 <= sp <= 65535
                or not 0 <= dp <= 65535
                or not 0 <= pr <= 255
                # For ICMP the "ports" are the type and code, one byte each.
                or ((pr == 1 or pr == 58) and (sp > 255 or dp > 255))
                or direction not in ("I", "O")
                or state not in states
                or not ts.isdigit()
                or len(ts) > 14
                or not enc.isascii()
            ):
                raise ValueError
            counters = p1 + b1 + p2 + b2
            if counters and (
                not counters.isdigit()
                # Beyond 18 digits a counter overflows the 64-bit integers of every format.
                or (len(counters) > 18 and (len(b1) > 18 or len(b2) > 18 or len(p1) > 18 or len(p2) > 18))
            ):
                raise ValueError
            append(
                make(
                    FlowEvent,
                    (
                        ctx,
                        prefix + str(i),
                        int(ts),
                        src,
                        dst,
                        sp,
                        dp,
                        pr,
                        direction == "I",
                        state != "D",
                        state,
                        enc,
                        int(p1) if p1 else None,
                        int(b1) if b1 else None,
                        int(p2) if p2 else None,
                        int(b2) if b2 else None,
                    ),
                )
            )
        except (ValueError, TypeError, AttributeError):
            bad.append((i, raw))
    return bad


_GROUP_PARSERS: dict[tuple[str, int], Callable[[FlowContext, int, Iterable[Any], list[FlowEvent]], _BadTuples]] = {
    ("nsg", 1): _nsg_v1,
    ("nsg", 2): _nsg_v2,
    ("vnet", 4): _vnet_v4,
}

_LAYOUTS = (
    {("nsg", 1): 0, ("nsg", 2): 1, ("vnet", 4): 2}
    if core is None
    else {
        ("nsg", 1): core.NSG1,
        ("nsg", 2): core.NSG2,
        ("vnet", 4): core.VNET4,
    }
)


def _core_part(
    ctx: FlowContext,
    layout: int,
    parse: Callable[[FlowContext, int, Iterable[Any], list[FlowEvent]], _BadTuples],
    index: int,
    tuples: list[Any] | TupleSpan,
    start: int,
    count: int,
    out: Any,
) -> _BadTuples:
    """tuples[start:start + count] into ``out`` (a compiled Events) through the compiled parser.

    The tuples it leaves to the reference (bad ones, and spellings it does not judge itself) go through
    ``parse``, the reference group parser, one at a time: what it accepts takes its place in the batch,
    what it rejects is handed back for explain_tuple, exactly as without the compiled core.
    """
    first = index + start
    if type(tuples) is TupleSpan and tuples.text_is_ascii:
        text_, pos, end = tuples.raw_from(start)
        after, deferred = out.add_span(ctx, ctx.id_prefix, layout, text_, pos, end, count, first)
        tuples.moved_to(start + count, after)
    else:
        part = tuples if start == 0 and count == len(tuples) and type(tuples) is list else tuples[start : start + count]
        deferred = out.add_list(ctx, ctx.id_prefix, layout, part, first)
    if not deferred:
        return []
    bad: _BadTuples = []
    for row, i, raw in deferred:
        one: list[FlowEvent] = []
        if parse(ctx, i, (raw,), one):
            bad.append((i, raw))
            out.resolve(row, None)
        else:
            out.resolve(row, one[0])
    if bad:
        out.compact()
    return bad


_FIELDS = {
    ("nsg", 1): "ts,src,dst,sport,dport,proto,direction,decision",
    ("nsg", 2): "ts,src,dst,sport,dport,proto,direction,decision,state,pkts_s2d,bytes_s2d,pkts_d2s,bytes_d2s",
    ("vnet", 4): "ts,src,dst,sport,dport,proto,direction,state,encryption,pkts_s2d,bytes_s2d,pkts_d2s,bytes_d2s",
}


def explain_tuple(kind: str, version: int, raw: Any) -> str:
    """Say precisely what is wrong with a tuple the fast path rejected."""
    if not isinstance(raw, str):
        return f"flow tuple is {_kind(raw)}, not a string"
    names = _FIELDS[(kind, version)].split(",")
    values = raw.split(",")
    if len(values) != len(names):
        return f"expected {len(names)} fields for {kind.upper()} version {version}, got {len(values)}"
    f = dict(zip(names, values, strict=True))
    if not f["ts"].isdigit() or len(f["ts"]) > (11 if kind == "nsg" else 14):
        return f"bad timestamp {f['ts']!r}"
    for key in ("src", "dst"):
        if not ip_version(f[key]):
            return f"bad {key} address {f[key]!r}"
    src_version, dst_version = ip_version(f["src"]), ip_version(f["dst"])
    if src_version != dst_version:
        return f"src {f['src']!r} is IPv{src_version} and dst {f['dst']!r} IPv{dst_version}: a flow has one IP version"
    for key in ("sport", "dport"):
        if not f[key].isdigit() or int(f[key]) > 65535:
            return f"bad {key} {f[key]!r} (expected 0-65535)"
    if kind == "nsg" and f["proto"] not in _NSG_PROTOCOLS:
        return f"bad protocol {f['proto']!r} (expected T or U)"
    if kind == "vnet" and (not f["proto"].isdigit() or int(f["proto"]) > 255):
        return f"bad protocol number {f['proto']!r}"
    if kind == "vnet" and int(f["proto"]) in (1, 58) and max(int(f["sport"]), int(f["dport"])) > 255:
        return f"bad ICMP type {f['sport']!r} or code {f['dport']!r} (expected 0-255: ICMP tuples log them as ports)"
    if f["direction"] not in ("I", "O"):
        return f"bad direction {f['direction']!r} (expected I or O)"
    if "decision" in f and f["decision"] not in ("A", "D"):
        return f"bad decision {f['decision']!r} (expected A or D)"
    if "state" in f and f["state"] not in (_NSG_STATES if kind == "nsg" else _VNET_STATES):
        return f"bad flow state {f['state']!r}"
    for key in ("pkts_s2d", "bytes_s2d", "pkts_d2s", "bytes_d2s"):
        if key in f and f[key] and (not f[key].isdigit() or len(f[key]) > 18):
            return f"bad counter {key}={f[key]!r}"
    return "invalid flow tuple"
