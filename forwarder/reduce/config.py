"""Each sink's reduction from the config: its own ``filter`` table or the ``[filter]`` default, and ``aggregate``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from forwarder.reduce.aggregate import AggregateConfigError, AggregateSpec, parse_spec
from forwarder.reduce.filters import FilterConfigError, TupleFilter, compile_filter

SINK_KEYS = ("filter", "aggregate")  # keys every sink table has, handled here rather than by the sink
# What a format's aggregates must carry: ASIM rows name both ends, the port, the protocol and the direction;
# OCSF's connection_info needs the protocol and an address to tell the IP version.
_ASIM_KEY = ("src_ip", "dst_ip", "dst_port", "protocol", "direction")


def key_problem(fmt: str, key: Sequence[str]) -> str | None:
    """Why ``fmt`` cannot render aggregates of ``key``, or None."""
    if fmt == "asim":
        missing = [k for k in _ASIM_KEY if k not in key]
        if missing:
            return (
                f"format asim needs {', '.join(missing)} in the key (every ASIM row names both ends, the destination "
                "port, the protocol and the direction)"
            )
    if fmt == "ocsf" and ("protocol" not in key or not {"src_ip", "dst_ip"} & set(key)):
        return "format ocsf needs protocol and src_ip or dst_ip in the key (OCSF names the protocol and its IP version)"
    return None


class ReductionConfigError(ValueError):
    """A filter or aggregate table that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Reduction:
    """What one sink asks for between normalising and formatting."""

    filter: TupleFilter | None = None
    aggregate: AggregateSpec | None = None
    filter_key: str = ""  # the filter's configuration, canonical: sinks with equal keys share the work

    def describe(self) -> str:
        parts = []
        if self.filter is not None:
            parts.append(f"filter ({len(self.filter.include)} include, {len(self.filter.exclude)} exclude rules)")
        if self.aggregate is not None:
            parts.append(f"aggregate every {self.aggregate.window_ms // 60_000}m by {', '.join(self.aggregate.key)}")
        return "; ".join(parts)


def address_lists(cfg: Mapping[str, Any]) -> dict[str, list[str]]:
    lists = cfg.get("address_lists", {})
    return {str(k): list(v) for k, v in lists.items()}


def build_filter(spec: Mapping[str, Any] | None, where: str, lists: Mapping[str, Iterable[str]]) -> TupleFilter | None:
    """None when nothing would ever be dropped (no table, or one without rules)."""
    if not spec:
        return None
    try:
        flt = compile_filter(spec, where, lists)
    except FilterConfigError as exc:
        raise ReductionConfigError(str(exc)) from None
    return flt if flt.include or flt.exclude else None


def reductions(cfg: Mapping[str, Any]) -> list[Reduction]:
    """One Reduction per ``[[sink]]``, in order."""
    lists = address_lists(cfg)
    default = cfg.get("filter")
    out = []
    for i, sink in enumerate(cfg["sink"]):
        own = "filter" in sink
        spec = sink["filter"] if own else default
        flt = build_filter(spec, f"sink[{i}].filter" if own else "filter", lists)
        agg = None
        if "aggregate" in sink:
            try:
                agg = parse_spec(sink["aggregate"], f"sink[{i}].aggregate")
            except AggregateConfigError as exc:
                raise ReductionConfigError(str(exc)) from None
            problem = key_problem(sink.get("format", "asim" if sink.get("type") == "azure_monitor" else "ecs"), agg.key)
            if problem:
                raise ReductionConfigError(f"sink[{i}].aggregate.key: {problem}")
        out.append(Reduction(flt, agg, json.dumps(spec, sort_keys=True) if flt else ""))
    return out


def sink_table(sink: Mapping[str, Any]) -> dict[str, Any]:
    """A sink's table without the keys reduction handles, for the sink's own from_config."""
    return {k: v for k, v in sink.items() if k not in SINK_KEYS}
