"""ArcSight Common Event Format (CEF) lines, for ArcSight, Sentinel's CommonSecurityLog and QRadar.

One line per flow tuple::

    CEF:0|Microsoft|Azure NSG Flow Logs|2|flow-allowed|Flow allowed|1|act=Allow rt=... externalId=...

Mapping decisions (see also schemas/cef.schema.json):

- Header: vendor ``Microsoft``; product ``Azure NSG Flow Logs`` or ``Azure VNet Flow Logs``; device
  version = flow log version; signature id ``flow-allowed`` / ``flow-denied``; name ``Flow allowed`` /
  ``Flow denied`` (the spec asks that the name repeat nothing carried by other fields, so the rule
  stays in cs1); severity 1 for allowed flows, 3 for denied ones (both in CEF's Low band: a denied flow
  is the NSG doing its job, worth more attention than an allowed one but not an alert by itself).
- The CEF spec types ``src`` / ``dst`` as IPv4 addresses. IPv6 flows therefore carry their
  addresses in ``c6a2`` (labelled "Source IPv6 Address") and ``c6a3`` ("Destination IPv6 Address"),
  the convention F5, TippingPoint and others use; ``src`` / ``dst`` are then absent.
- ``in`` / ``out`` are bytes source->destination / destination->source (the spec's definition, not
  the NSG direction); packets go to ``cn1`` / ``cn2``. Absent counters (state B, NSG v1) are omitted.
  ``spt`` / ``dpt`` are written as Azure logs them (for ICMP: type and code).
- ``act`` is ``Allow`` / ``Deny`` (Azure's own words); ``deviceDirection`` 0 inbound, 1 outbound;
  the NIC's MAC goes to ``dmac`` for inbound flows (the NIC is the destination), else ``smac``.
- Custom strings: cs1 rule, cs2 NSG or flow log name, cs3 subscription, cs4 resource group,
  cs5 flow state (Begin/Continuing/End/Denied; absent for NSG v1), cs6 Community ID;
  ``flexString1`` the VNet encryption state; ``deviceExternalId`` the resource id of the NSG or
  flow log; ``externalId`` the deterministic event id.
- Escaping per the spec: header fields escape ``\\`` and ``|``; extension values escape ``\\``,
  ``=``, newline (``\\n``) and carriage return (``\\r``). The spec allows multi-line text only in
  extension values, so CR/LF in a header field become spaces. Nothing read from the flow log goes
  into the header today; the escaping is there for whatever does.

Per-event work is two dict lookups and one f-string: everything that depends only on the
FlowContext (and the flow state) is rendered once per distinct context, everything that depends on
the 5-tuple once per 5-tuple (with its Community ID). Addresses come validated from the normaliser
and event ids are hex and digits, so neither needs escaping; every string from the record is escaped
once, when its context is first seen.
"""

from __future__ import annotations

from collections.abc import Sequence

from forwarder.flowlog.community_id import community_id
from forwarder.flowlog.core import CoreEvents, core
from forwarder.flowlog.model import FlowContext, FlowEvent, utf8_safe
from forwarder.formats.common import (
    CACHE_MAX,
    FLOW_STATES,
    IANA_KEYWORDS,
    PRODUCTS,
    VENDOR,
    FiveTuple,
    TupleCachingFormatter,
    bounded_put,
    colon_mac,
)

SIGNATURES = {True: ("flow-allowed", "Flow allowed", "1"), False: ("flow-denied", "Flow denied", "3")}
ACTIONS = {True: "Allow", False: "Deny"}
NAME_LABELS = {"nsg": "NetworkSecurityGroup", "vnet": "FlowLog"}

# IANA keywords; numbers without a well-known name are written as the number.
_PROTO = [IANA_KEYWORDS.get(n, str(n)) for n in range(256)]


def escape_header(value: str) -> str:
    """A header field: backslash and pipe escaped; CR/LF, which the spec does not allow there, become spaces."""
    value = utf8_safe(value)
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


# The spec's length of cs1-cs6 and flexString1-2; longer values are cut so that receivers that enforce
# it (ArcSight, the schema) do not reject the event. Azure's own names are at most 80 characters.
STRING_MAX = 1023


def escape_value(value: str) -> str:
    """An extension value: backslash, equals sign, newline and carriage return escaped."""
    value = utf8_safe(value)
    return value.replace("\\", "\\\\").replace("=", "\\=").replace("\n", "\\n").replace("\r", "\\r")


class _Pieces:
    """What one context contributes to its lines, rendered once."""

    __slots__ = ("common", "heads", "macs", "tails")

    def __init__(self, ctx: FlowContext) -> None:
        product = escape_header(PRODUCTS.get(ctx.kind, f"Azure {ctx.kind} Flow Logs"))
        heads = []
        for allowed in (False, True):
            sig, name, severity = SIGNATURES[allowed]
            heads.append(f"CEF:0|{VENDOR}|{product}|{ctx.version}|{sig}|{name}|{severity}|act={ACTIONS[allowed]} rt=")
        self.heads = (heads[0], heads[1])  # by allowed
        common = ""
        for key, label, value in (
            ("cs1", "Rule", ctx.rule),
            ("cs2", NAME_LABELS.get(ctx.kind, "FlowLog"), ctx.name),
            ("cs3", "SubscriptionId", ctx.subscription_id),
            ("cs4", "ResourceGroup", ctx.resource_group),
        ):
            if value:
                common += f" {key}={escape_value(value[:STRING_MAX])} {key}Label={label}"
        if ctx.resource_id:
            common += " deviceExternalId=" + escape_value(ctx.resource_id)
        self.common = common
        mac = colon_mac(ctx.mac)
        # The NIC is the source of an outbound flow and the destination of an inbound one.
        self.macs = (f" smac={mac}" if mac else "", f" dmac={mac}" if mac else "")  # by inbound
        self.tails: dict[str, tuple[str, str]] = {}  # flow state + encryption -> end of line by inbound

    def tail(self, state: str, enc: str) -> tuple[str, str]:
        piece = ""
        if state:
            piece += f" cs5={escape_value(FLOW_STATES.get(state, state))} cs5Label=FlowState"
        if enc:
            piece += f" flexString1={escape_value(enc[:STRING_MAX])} flexString1Label=Encryption"
        tails = (
            f"{piece} deviceDirection=1{self.macs[0]}{self.common}",
            f"{piece} deviceDirection=0{self.macs[1]}{self.common}",
        )
        return bounded_put(self.tails, state + enc, tails, CACHE_MAX)


class CefFormatter(TupleCachingFormatter[_Pieces, str]):
    name = "cef"
    content_type = "text/plain"
    core_format = core.CEF if core is not None else -1
    core_globals = tuple(_PROTO)

    def _core_group(self, pieces: _Pieces) -> tuple[str, ...]:
        return pieces.heads

    def _core_variant(self, pieces: _Pieces, state: str, enc: str) -> tuple[str, ...]:
        return pieces.tails.get(state + enc) or pieces.tail(state, enc)

    def format_many(self, events: Sequence[FlowEvent]) -> list[str]:
        if type(events) is CoreEvents:
            return self._render_lines(events)
        out: list[str] = []
        append = out.append
        addr_cache = self._addr_cache(len(events))
        new_addr = self._new_addr
        last_ctx = self._last_ctx
        pieces = self._last_pieces
        heads: tuple[str, str] = pieces.heads if pieces else ("", "")
        tails: dict[str, tuple[str, str]] = pieces.tails if pieces else {}
        for e in events:
            ctx, eid, ts, src, dst, sp, dp, pr, inbound, allowed, state, enc, p1, b1, p2, b2 = e
            if ctx is not last_ctx:
                pieces = self._pieces(ctx)
                heads = pieces.heads
                tails = pieces.tails
                last_ctx = ctx
            key = (src, dst, sp, dp, pr)
            addr = addr_cache.get(key)
            if addr is None:
                addr = addr_cache[key] = new_addr(key)
            tail = tails.get(state + enc)
            if tail is None:
                assert pieces is not None
                tail = pieces.tail(state, enc)
            # One f-string per line, with as few parts as possible: the cheapest way CPython has to build it.
            if b1 is not None and b2 is not None and p1 is not None and p2 is not None:
                append(
                    f"{heads[allowed]}{ts} externalId={eid}{addr} in={b1} out={b2} cn1={p1}"
                    f" cn1Label=PacketsSourceToDestination cn2={p2} cn2Label=PacketsDestinationToSource{tail[inbound]}"
                )
            elif b1 is None and b2 is None and p1 is None and p2 is None:
                append(f"{heads[allowed]}{ts} externalId={eid}{addr}{tail[inbound]}")
            else:
                counters = _partial_counters(p1, b1, p2, b2)
                append(f"{heads[allowed]}{ts} externalId={eid}{addr}{counters}{tail[inbound]}")
        self._last_ctx = last_ctx
        self._last_pieces = pieces
        return out

    def _new_pieces(self, ctx: FlowContext) -> _Pieces:
        return _Pieces(ctx)

    def _new_addr(self, key: FiveTuple) -> str:
        src, dst, sp, dp, pr = key
        cid = community_id(src, dst, sp, dp, pr).replace("=", "\\=")
        if ":" in src:
            return (
                f" c6a2={src} c6a2Label=Source IPv6 Address c6a3={dst} c6a3Label=Destination IPv6 Address"
                f" spt={sp} dpt={dp} proto={_PROTO[pr]} cs6={cid} cs6Label=CommunityId"
            )
        return f" src={src} dst={dst} spt={sp} dpt={dp} proto={_PROTO[pr]} cs6={cid} cs6Label=CommunityId"


def _partial_counters(p1: int | None, b1: int | None, p2: int | None, b2: int | None) -> str:
    """Rare: a tuple with some counters empty. Only the present ones are written."""
    out = ""
    if b1 is not None:
        out += f" in={b1}"
    if b2 is not None:
        out += f" out={b2}"
    if p1 is not None:
        out += f" cn1={p1} cn1Label=PacketsSourceToDestination"
    if p2 is not None:
        out += f" cn2={p2} cn2Label=PacketsDestinationToSource"
    return out


def make_formatter() -> CefFormatter:
    return CefFormatter()
