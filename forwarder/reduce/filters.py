"""Declarative tuple filters: ``include`` and ``exclude`` rule tables, any number of each.

A tuple is kept when it matches at least one ``include`` rule (or there are none) and no ``exclude``
rule. A rule matches when every condition it names matches; a condition given a list matches any of
its values. Conditions: decision, direction, state, protocol, src / dst / address (CIDR lists and
named lists), src_port / dst_port / port (numbers and "a-b" ranges), rule and resource (the NSG or
VNet flow log name; glob patterns, case-insensitive) and mac. Every dropped tuple is counted under a
reason: the exclude rule's ``name`` (or ``exclude[i]``), or ``not included``.

This is the reference implementation; the compiled core evaluates the same rules on its columns.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from forwarder.flowlog.model import FlowEvent
from forwarder.reduce.addresses import AddressListError, AddressSet

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


@dataclass(frozen=True)
class Rule:
    label: str
    tests: tuple[Callable[[FlowEvent], bool], ...]
    spec: Mapping[str, Any]  # as configured: the compiled core builds its own tables from it

    def matches(self, e: FlowEvent) -> bool:
        return all(test(e) for test in self.tests)


Test = Callable[[FlowEvent], bool]


def _test(key: str, raw: Any, at: str, lists: Mapping[str, Iterable[str]]) -> Test:
    """One condition as a predicate on an event."""
    if key == "decision":
        decisions = _choices(raw, at, _DECISIONS)
        return lambda e: e.allowed in decisions
    if key == "direction":
        directions = _choices(raw, at, _DIRECTIONS)
        return lambda e: e.inbound in directions
    if key == "state":
        states = _choices(raw, at, _STATES)
        return lambda e: e.state in states
    if key == "protocol":
        protocols = _protocols(raw, at)
        return lambda e: e.protocol in protocols
    if key in ("src", "dst", "address"):
        addrs = _Addresses(raw, at, lists)
        if key == "src":
            return lambda e: e.src_ip in addrs
        if key == "dst":
            return lambda e: e.dst_ip in addrs
        return lambda e: e.src_ip in addrs or e.dst_ip in addrs
    if key in ("src_port", "dst_port", "port"):
        ports = _ports(raw, at)
        if key == "src_port":
            return lambda e: bool(ports[e.src_port])
        if key == "dst_port":
            return lambda e: bool(ports[e.dst_port])
        return lambda e: bool(ports[e.src_port] or ports[e.dst_port])
    if key == "rule":
        rule_re = _globs(raw, at)
        return lambda e: rule_re.match(e.ctx.rule) is not None
    if key == "resource":
        name_re = _globs(raw, at)
        return lambda e: name_re.match(e.ctx.name) is not None
    macs = _macs(raw, at)
    return lambda e: e.ctx.mac in macs


def compile_rule(spec: Mapping[str, Any], where: str, label: str, lists: Mapping[str, Iterable[str]]) -> Rule:
    unknown = sorted(set(spec) - {*CONDITIONS, "name"})
    if unknown:
        raise FilterConfigError(f"{where}: unknown condition {unknown[0]!r} (known: {', '.join(CONDITIONS)})")
    tests = [_test(key, spec[key], f"{where}.{key}", lists) for key in CONDITIONS if key in spec]
    name = spec.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise FilterConfigError(f'{where}.name: expected a label such as "allowed east-west", got {name!r}')
    return Rule(name or label, tuple(tests), spec)


class TupleFilter:
    """Keeps or drops events; ``apply`` returns the kept ones and the dropped counts by reason."""

    def __init__(self, include: Sequence[Rule], exclude: Sequence[Rule], where: str):
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.where = where  # the config key it came from, for messages

    def reason(self, e: FlowEvent) -> str | None:
        """Why the event is dropped, or None to keep it."""
        if self.include and not any(r.matches(e) for r in self.include):
            return NOT_INCLUDED
        for r in self.exclude:
            if r.matches(e):
                return r.label
        return None

    def apply(self, events: Sequence[FlowEvent]) -> tuple[Sequence[FlowEvent], Counter[str]]:
        dropped: Counter[str] = Counter()
        kept: list[FlowEvent] = []
        reason = self.reason
        for e in events:
            why = reason(e)
            if why is None:
                kept.append(e)
            else:
                dropped[why] += 1
        if not dropped:
            return events, dropped  # everything kept: the caller's sequence (a compiled batch stays compiled)
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
