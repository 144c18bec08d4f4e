"""What the output formats share: the names they write, and the caches that keep per-event work small.

Every formatter renders text that depends only on a FlowContext once per distinct context content,
and (CEF, OCSF) text that depends only on a 5-tuple once per 5-tuple. ``CachingFormatter`` holds
those caches; each format writes its own ``format_many`` loop, because inlining the cache lookups
there is what keeps a tuple at one f-string (a shared helper called per event would cost more than
the lookups it hides).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from forwarder.flowlog.core import CoreEvents, core
from forwarder.flowlog.model import FlowContext, FlowEvent

K = TypeVar("K")
V = TypeVar("V")
P = TypeVar("P")  # what a format renders once per context content
A = TypeVar("A")  # what a format renders once per 5-tuple

FiveTuple = tuple[str, str, int, int, int]  # source ip, destination ip, source port, destination port, protocol

VENDOR = "Microsoft"
PRODUCTS = {"nsg": "Azure NSG Flow Logs", "vnet": "Azure VNet Flow Logs"}
FLOW_STATES = {"B": "Begin", "C": "Continuing", "E": "End", "D": "Denied"}
# IANA protocol keywords for the protocol numbers Azure flow logs carry in practice.
IANA_KEYWORDS = {1: "ICMP", 2: "IGMP", 4: "IPv4", 6: "TCP", 17: "UDP", 41: "IPv6", 47: "GRE", 50: "ESP", 51: "AH",
                 58: "IPv6-ICMP", 132: "SCTP"}  # fmt: skip

CACHE_MAX = 16_384  # entries in a per-value cache (5-tuples, flow state + encryption): bounds memory


def content_key(ctx: FlowContext) -> tuple[object, ...]:
    """Every context field some format writes: contexts with equal keys render the same text.

    Consecutive records repeat the same rule groups in new FlowContext objects, so caching by
    content rather than identity renders each rule group once per formatter, not once per record.
    """
    return (
        ctx.kind,
        ctx.version,
        ctx.resource_id,
        ctx.subscription_id,
        ctx.resource_group,
        ctx.name,
        ctx.mac,
        ctx.rule,
        ctx.category,
        ctx.acl_id,
        ctx.target_resource_id,
        ctx.flow_log_guid,
    )


def colon_mac(mac: str) -> str:
    """'AA-BB-CC-DD-EE-FF' (the model's form) to the colon form CEF and OCSF specify."""
    return mac.replace("-", ":")


def bounded_put(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """Store ``value`` and return it; a full cache is emptied first, so that memory stays bounded
    whatever the input (the entries still in use come back on their next miss)."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


class CachingFormatter(Generic[P]):
    """A Formatter's pieces rendered per context content, and the last context seen (events arrive
    grouped by context, so an identity check in ``format_many`` usually skips the content lookup).

    Subclasses set ``name`` and ``content_type``, and implement ``format_many`` and ``_new_pieces``.
    """

    name: str
    content_type: str
    ctx_cache_max = 4096

    def __init__(self) -> None:
        self._ctx_pieces: dict[tuple[object, ...], P] = {}
        self._last_ctx: FlowContext | None = None
        self._last_pieces: P | None = None

    # The compiled core's number for this format, and the pieces it takes once per call (see csrc/render.c).
    core_format = -1
    core_globals: tuple[str, ...] = ()

    def format(self, event: FlowEvent) -> str:
        return self.format_many((event,))[0]

    def format_many(self, events: Sequence[FlowEvent]) -> list[str]:
        raise NotImplementedError

    def format_joined(self, events: Sequence[FlowEvent]) -> bytes:
        """The lines of ``events`` as UTF-8, each followed by a newline (what a file or a pipe gets)."""
        if type(events) is CoreEvents and self.core_format >= 0:  # a format the core renders
            joined = self._render(events, joined=True)
            assert isinstance(joined, bytes)
            return joined
        return ("\n".join(self.format_many(events)) + "\n").encode() if len(events) else b""

    def _render_lines(self, events: object) -> list[str]:
        lines = self._render(events, joined=False)
        assert isinstance(lines, list)
        return lines

    def _render(self, events: object, joined: bool) -> list[str] | bytes:
        """Lines rendered by the compiled core from its columns, with the constant pieces of each rule
        group and (flow state, encryption) pair rendered here by the same code as the Python path."""
        assert core is not None and isinstance(events, CoreEvents)
        variants = events.variants()
        groups: list[tuple[str, ...]] = []
        per_variant: list[list[tuple[str, ...]]] = []
        for ctx in events.contexts():
            pieces = self._pieces(ctx)
            groups.append(self._core_group(pieces))
            per_variant.append([self._core_variant(pieces, state, enc) for state, enc in variants])
        rows = events.python_rows()
        # Tuples the reference parser took (rare spellings) are formatted by the reference too.
        lines = self.format_many([events[i] for i in rows]) if rows else []
        rendered: list[str] | bytes = core.render(
            self.core_format, events, groups, per_variant, self.core_globals, lines, joined
        )
        return rendered

    def _core_group(self, pieces: P) -> tuple[str, ...]:
        raise NotImplementedError

    def _core_variant(self, pieces: P, state: str, enc: str) -> tuple[str, ...]:
        raise NotImplementedError

    def _pieces(self, ctx: FlowContext) -> P:
        """A context's pieces, cached by content: every record repeats the same rule groups."""
        key = content_key(ctx)
        pieces = self._ctx_pieces.get(key)
        if pieces is None:
            pieces = bounded_put(self._ctx_pieces, key, self._new_pieces(ctx), self.ctx_cache_max)
        return pieces

    def _new_pieces(self, ctx: FlowContext) -> P:
        raise NotImplementedError


class TupleCachingFormatter(CachingFormatter[P], Generic[P, A]):
    """A CachingFormatter that also renders what depends only on the 5-tuple (addresses, ports,
    protocol, Community ID) once per 5-tuple; subclasses implement ``_new_addr`` as well.

    ``format_many`` takes the cache from ``_addr_cache(len(events))`` and stores ``_new_addr(key)`` in it
    on a miss: about every other tuple is a new 5-tuple, and a second call per miss would show.
    """

    def __init__(self) -> None:
        super().__init__()
        self._addr: dict[FiveTuple, A] = {}

    def _addr_cache(self, batch: int) -> dict[FiveTuple, A]:
        """The 5-tuple cache for a batch of ``batch`` events, emptied first if they could overfill it."""
        addr = self._addr
        if len(addr) + batch > CACHE_MAX:
            addr.clear()
        return addr

    def _new_addr(self, key: FiveTuple) -> A:
        raise NotImplementedError
