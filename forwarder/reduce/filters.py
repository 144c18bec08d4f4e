"""Declarative tuple filters: ``include`` and ``exclude`` rule tables, any number of each.

A tuple is kept when it matches at least one ``include`` rule (or there are none) and no ``exclude``
rule. A rule matches when every condition it names matches; a condition given a list matches any of
its values. Conditions: decision, direction, state, protocol, src / dst / address (CIDR lists and
named lists), src_port / dst_port / port (numbers and "a-b" ranges), rule and resource (the NSG or
VNet flow log name; glob patterns, case-insensitive) and mac. Every dropped tuple is counted under a
reason: the exclude rule's ``name`` (or ``exclude[i]``), or ``not included``.

This is the reference implementation. A compiled batch (forwarder._core.Events) is judged by the compiled core
on its columns instead, with the same results (forwarder/reduce/compiled.py).
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from forwarder.flowlog.core import CoreEvents
from forwarder.flowlog.model import FlowContext, FlowEvent
from forwarder.reduce.addresses import AddressListError, AddressSet

if TYPE_CHECKING:
    from forwarder.reduce.compiled import CoreFilter

NOT_INCLUDED = "not included"
CONDITIONS = (
    "decision", "direction", "state", "protocol", "src", "dst", "address", "src_port", "dst_port", "port",
    "rule", "resource", "mac",
)  # fmt: skip
_DECISIONS = {"allowed": True, "denied": False}
_DIRECTIONS = {"inbound": True, "outbound": False}
_STATES = {"begin": "B", "continuing": "C", "end": "E", "denied": "D", "B": "B", "C": "C", "E": "E", "D": "D"}
PROTOCOLS = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51, "icmpv6": 58,
             "ipv6-icmp": 58, "sctp": 132}  # fmt: skip
_PORT_RANGE = re.compile(r"^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$")
_CACHE_MAX = 65_536


class FilterConfigError(ValueError):
    """A filter rule that cannot be used; the message names the key."""


def _values(raw: Any, key: str) -> list[Any]:
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise FilterConfigError(f"{key}: an empty list matches nothing; leave the condition out instead")
    return values


def _choices(raw: Any, key: str, names: Mapping[str, Any]) -> frozenset[Any]:
    out = set()
    for v in _values(raw, key):
        if not isinstance(v, str) or v not in names:
            raise FilterConfigError(f"{key}: {v!r} is not one of {', '.join(n for n in names if len(n) > 1)}")
        out.add(names[v])
    return frozenset(out)


def _protocols(raw: Any, key: str) -> frozenset[int]:
    out = set()
    for v in _values(raw, key):
        if isinstance(v, str) and v.lower() in PROTOCOLS:
            out.add(PROTOCOLS[v.lower()])
        elif isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255:
            out.add(v)
        else:
            raise FilterConfigError(f"{key}: {v!r} is not a protocol name ({', '.join(PROTOCOLS)}) or number 0-255")
    return frozenset(out)


def _ports(raw: Any, key: str) -> bytes:
    """A 65,536-entry membership table: one lookup per tuple."""
    table = bytearray(65536)
    for v in _values(raw, key):
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 65535:
            table[v] = 1
            continue
        m = _PORT_RANGE.match(v) if isinstance(v, str) else None
        if m is None or not int(m[1]) <= int(m[2]) <= 65535:
            raise FilterConfigError(f'{key}: {v!r} is not a port (0-65535) or a range such as "1024-65535"')
        table[int(m[1]) : int(m[2]) + 1] = b"\x01" * (int(m[2]) - int(m[1]) + 1)
    return bytes(table)


def _globs(raw: Any, key: str) -> re.Pattern[str]:
    patterns = []
    for v in _values(raw, key):
        if not isinstance(v, str) or not v:
            raise FilterConfigError(f'{key}: {v!r} is not a glob pattern such as "UserRule_*"')
        patterns.append(fnmatch.translate(v))
    return re.compile("|".join(patterns), re.IGNORECASE)


def _macs(raw: Any, key: str) -> frozenset[str]:
    out = set()
    for v in _values(raw, key):
        digits = "".join(c for c in str(v) if c not in ":-.").upper()
        if len(digits) != 12 or any(c not in "0123456789ABCDEF" for c in digits):
            raise FilterConfigError(f"{key}: {v!r} is not a MAC address such as 00-0D-3A-F8-78-56")
        out.add("-".join(digits[i : i + 2] for i in range(0, 12, 2)))
    return frozenset(out)


class _Addresses:
    """An AddressSet with a bounded cache: flows repeat their addresses."""

    def __init__(self, raw: Any, key: str, lists: Mapping[str, Iterable[str]]):
        entries = _values(raw, key)
        if not all(isinstance(v, str) for v in entries):
            raise FilterConfigError(f"{key}: expected addresses, CIDR ranges or list names as strings")
        try:
            self.set = AddressSet(entries, lists)
        except AddressListError as exc:
            raise FilterConfigError(f"{key}: {exc}") from None
        self._cache: dict[str, bool] = {}

    def __contains__(self, address: str) -> bool:
        hit = self._cache.get(address)
        if hit is None:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            hit = self._cache[address] = address in self.set
        return hit


Test = Callable[[FlowEvent], bool]
ContextTest = Callable[[FlowContext], bool]
CONTEXT_CONDITIONS = ("rule", "resource", "mac")  # the same for every tuple of a rule group


@dataclass(frozen=True)
class Rule:
    label: str
    tests: tuple[Test, ...]
    spec: Mapping[str, Any]  # as configured
    # Each condition's compiled value (a set, a port table, an _Addresses, a pattern): the compiled core
    # builds its tables from them (forwarder/reduce/compiled.py).
    conditions: tuple[tuple[str, Any], ...] = ()

    def matches(self, e: FlowEvent) -> bool:
        return all(test(e) for test in self.tests)


def _value(key: str, raw: Any, at: str, lists: Mapping[str, Iterable[str]]) -> Any:
    """One condition's configured value, checked and compiled."""
    if key == "decision":
        return _choices(raw, at, _DECISIONS)
    if key == "direction":
        return _choices(raw, at, _DIRECTIONS)
    if key == "state":
        return _choices(raw, at, _STATES)
    if key == "protocol":
        return _protocols(raw, at)
    if key in ("src", "dst", "address"):
        return _Addresses(raw, at, lists)
    if key in ("src_port", "dst_port", "port"):
        return _ports(raw, at)
    if key in ("rule", "resource"):
        return _globs(raw, at)
    return _macs(raw, at)


def context_test(key: str, value: Any) -> ContextTest:
    """A rule, resource or mac condition as a predicate on a rule group's context."""
    if key == "rule":
        return lambda ctx: value.match(ctx.rule) is not None
    if key == "resource":
        return lambda ctx: value.match(ctx.name) is not None
    return lambda ctx: ctx.mac in value


def _test(key: str, value: Any) -> Test:
    """One condition as a predicate on an event."""
    if key == "decision":
        return lambda e: e.allowed in value
    if key == "direction":
        return lambda e: e.inbound in value
    if key == "state":
        return lambda e: e.state in value
    if key == "protocol":
        return lambda e: e.protocol in value
    if key == "src":
        return lambda e: e.src_ip in value
    if key == "dst":
        return lambda e: e.dst_ip in value
    if key == "address":
        return lambda e: e.src_ip in value or e.dst_ip in value
    if key == "src_port":
        return lambda e: bool(value[e.src_port])
    if key == "dst_port":
        return lambda e: bool(value[e.dst_port])
    if key == "port":
        return lambda e: bool(value[e.src_port] or value[e.dst_port])
    of_context = context_test(key, value)
    return lambda e: of_context(e.ctx)


def compile_rule(spec: Mapping[str, Any], where: str, label: str, lists: Mapping[str, Iterable[str]]) -> Rule:
    unknown = sorted(set(spec) - {*CONDITIONS, "name"})
    if unknown:
        raise FilterConfigError(f"{where}: unknown condition {unknown[0]!r} (known: {', '.join(CONDITIONS)})")
    conditions = tuple((key, _value(key, spec[key], f"{where}.{key}", lists)) for key in CONDITIONS if key in spec)
    name = spec.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise FilterConfigError(f'{where}.name: expected a label such as "allowed east-west", got {name!r}')
    return Rule(name or label, tuple(_test(key, value) for key, value in conditions), spec, conditions)


class TupleFilter:
    """Keeps or drops events; ``apply`` returns the kept ones and the dropped counts by reason."""

    def __init__(self, include: Sequence[Rule], exclude: Sequence[Rule], where: str):
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.where = where  # the config key it came from, for messages
        self._compiled: CoreFilter | None = None  # the rule tables in C, built for the first compiled batch

    def reason_index(self, e: FlowEvent) -> int:
        """0 to keep the event; 1 not included; 2 + k dropped by exclude rule k."""
        if self.include and not any(r.matches(e) for r in self.include):
            return 1
        why = 2
        for r in self.exclude:
            if r.matches(e):
                return why
            why += 1
        return 0

    def label(self, index: int) -> str:
        """The reason a reason_index stands for, as counted in nsg_forwarder_filtered_total."""
        return NOT_INCLUDED if index == 1 else self.exclude[index - 2].label

    def reason(self, e: FlowEvent) -> str | None:
        """Why the event is dropped, or None to keep it."""
        index = self.reason_index(e)
        return self.label(index) if index else None

    def apply(self, events: Sequence[FlowEvent]) -> tuple[Sequence[FlowEvent], Counter[str]]:
        if type(events) is CoreEvents:
            # A compiled batch is judged in C over its columns and stays compiled: no FlowEvent per tuple.
            compiled = self._compiled
            if compiled is None:
                from forwarder.reduce.compiled import CoreFilter  # imports this module

                compiled = self._compiled = CoreFilter(self)
            return compiled.apply(events)
        dropped: Counter[str] = Counter()
        kept: list[FlowEvent] = []
        reason_index = self.reason_index
        labels = ["", NOT_INCLUDED, *(r.label for r in self.exclude)]
        for e in events:
            why = reason_index(e)
            if why:
                dropped[labels[why]] += 1
            else:
                kept.append(e)
        if not dropped:
            return events, dropped  # everything kept: the caller's sequence
        return kept, dropped


def compile_filter(
    spec: Mapping[str, Any], where: str, lists: Mapping[str, Iterable[str]] | None = None
) -> TupleFilter:
    """A filter from its config table ``{include = [...], exclude = [...]}``; ``where`` is the key, for errors."""
    unknown = sorted(set(spec) - {"include", "exclude"})
    if unknown:
        raise FilterConfigError(f"{where}: unknown key {unknown[0]!r} (a filter has include and exclude rule lists)")
    tables: dict[str, list[Rule]] = {}
    for part in ("include", "exclude"):
        rules = spec.get(part, [])
        if not isinstance(rules, list) or not all(isinstance(r, Mapping) for r in rules):
            raise FilterConfigError(f"{where}.{part}: expected a list of rule tables ([[...{part}]] in TOML)")
        tables[part] = [
            compile_rule(r, f"{where}.{part}[{i}]", f"{part}[{i}]", lists or {}) for i, r in enumerate(rules)
        ]
    return TupleFilter(tables["include"], tables["exclude"], where)
