"""Filters and aggregation of compiled batches: what csrc/reduce.c takes, and what it leaves to Python.

A compiled batch (forwarder._core.Events) is filtered and aggregated in C over its columns, without building
a FlowEvent per tuple. This module turns a TupleFilter's rules and an aggregation key into the tables the C
code takes; decides what depends only on a rule group's context (the rule and resource globs and the MAC of a
filter rule; the rule, resource and MAC of an aggregation key) here, once per context; and has the reference
judge the rows that the compiled parser left to it. The results are those of filters.py and aggregate.py,
exactly (tests/test_reduce_core.py runs both on the same inputs).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from forwarder.flowlog.core import CoreEvents, core
from forwarder.flowlog.model import FlowContext, FlowEvent
from forwarder.reduce.aggregate import KEY_FIELDS
from forwarder.reduce.filters import CONTEXT_CONDITIONS, ContextTest, Rule, TupleFilter, context_test

_STATE_BITS = {"B": 1, "C": 2, "E": 4, "D": 8}  # csrc/reduce.h NF_S_*
_VERDICTS_MAX = 4096  # distinct (rule, resource, MAC) contexts remembered per filter


def _mask(values: Iterable[bool]) -> int:
    """decision / direction values as csrc/reduce.h takes them: bit 0 False (denied, outbound), bit 1 True."""
    return sum(2 if v else 1 for v in set(values))


def _ranges(ranges: Sequence[tuple[int, int]], width: int) -> bytes:
    return b"".join(first.to_bytes(width, "big") + last.to_bytes(width, "big") for first, last in ranges)


def rule_tables(rule: Rule) -> tuple[Any, ...]:
    """A rule as core.Filter takes it: (has_context, decisions, directions, states, protocols, src, dst, address,
    src_port, dst_port, port), 0 or None for a condition the rule does not have."""
    got = dict(rule.conditions)

    def addresses(key: str) -> tuple[bytes, bytes] | None:
        if key not in got:
            return None
        ranges = got[key].set
        return _ranges(ranges.v4, 4), _ranges(ranges.v6, 16)

    protocols = None
    if "protocol" in got:
        table = bytearray(256)
        for number in got["protocol"]:
            table[number] = 1
        protocols = bytes(table)
    return (
        any(key in got for key in CONTEXT_CONDITIONS),
        _mask(got["decision"]) if "decision" in got else 0,
        _mask(got["direction"]) if "direction" in got else 0,
        sum(_STATE_BITS[s] for s in got["state"]) if "state" in got else 0,
        protocols,
        addresses("src"),
        addresses("dst"),
        addresses("address"),
        got.get("src_port"),
        got.get("dst_port"),
        got.get("port"),
    )


class CoreFilter:
    """A TupleFilter's rules in C: ``apply`` gives what TupleFilter.apply gives, for compiled batches."""

    def __init__(self, flt: TupleFilter):
        assert core is not None
        rules = [*flt.include, *flt.exclude]
        self._flt = flt
        self._c = core.Filter([rule_tables(r) for r in rules], len(flt.include))
        self._context: list[list[ContextTest]] = [
            [context_test(key, value) for key, value in r.conditions if key in CONTEXT_CONDITIONS] for r in rules
        ]
        self._any_context = any(self._context)
        self._verdicts: dict[tuple[str, str, str], bytes] = {}

    def _verdict(self, ctx: FlowContext) -> bytes:
        """For each rule, 1 when its context conditions hold for the rule group of ``ctx``."""
        key = (ctx.rule, ctx.name, ctx.mac)  # all that the context conditions read
        verdict = self._verdicts.get(key)
        if verdict is None:
            if len(self._verdicts) >= _VERDICTS_MAX:
                self._verdicts.clear()
            verdict = self._verdicts[key] = bytes(all(t(ctx) for t in tests) for tests in self._context)
        return verdict

    def apply(self, events: Any) -> tuple[Sequence[FlowEvent], Counter[str]]:
        ctx_ok = b"".join(map(self._verdict, events.contexts())) if self._any_context else b""
        rows = events.python_rows()
        reference = [self._flt.reason_index(events[i]) for i in rows] if rows else []
        kept, dropped = self._c.apply(events, ctx_ok, reference)
        counts: Counter[str] = Counter()
        # Reasons in the order they first dropped a tuple, as the reference's loop fills its Counter.
        for why, n, _ in sorted(dropped, key=lambda d: d[2]):
            counts[self._flt.label(why)] += n
        return (events if kept is None else kept), counts


FIELD_BITS = {field: 1 << i for i, field in enumerate(KEY_FIELDS)}  # csrc/reduce.h NF_K_*


class CoreAccumulator:
    """One window's per-key sums in C, for WindowAggregator. The rule, resource and MAC of a key (whichever are
    in it) are one id per distinct combination, given here per rule group."""

    def __init__(self, key: tuple[str, ...]):
        assert core is not None
        # A random SipHash key per window: no input can be made to collide in the table.
        self._c = core.Aggregator(sum(FIELD_BITS[f] for f in key), os.urandom(16))
        self._ctx_fields = tuple(f for f in key if f in CONTEXT_CONDITIONS)
        self._ids: dict[tuple[str, ...], int] = {}

    def _id(self, ctx: FlowContext) -> int:
        key = tuple(ctx.rule if f == "rule" else ctx.name if f == "resource" else ctx.mac for f in self._ctx_fields)
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = len(self._ids)
        return found

    def add(self, events: Sequence[FlowEvent]) -> None:
        if type(events) is CoreEvents:
            group_ids: list[int] = []
            python_ids: list[int] = []
            if self._ctx_fields:
                group_ids = [self._id(ctx) for ctx in events.contexts()]  # type: ignore[attr-defined]
                python_ids = [self._id(events[i].ctx) for i in events.python_rows()]  # type: ignore[attr-defined]
            self._c.add(events, group_ids, python_ids)
            return
        items = list(events)
        self._c.add_events(items, [self._id(e.ctx) for e in items] if self._ctx_fields else [])

    def results(self) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._c.results()
        return rows
