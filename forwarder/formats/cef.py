"""ArcSight Common Event Format (CEF) lines, for ArcSight, Sentinel's CommonSecurityLog and QRadar.

One line per flow tuple::

    CEF:0|Microsoft|Azure NSG Flow Logs|2|flow-allowed|Flow allowed by <rule>|1|rt=... externalId=... src=...

Mapping decisions (see also schemas/cef.schema.json):

- Header: vendor ``Microsoft``; product ``Azure NSG Flow Logs`` or ``Azure VNet Flow Logs``; device
  version = flow log version; signature id ``flow-allowed`` / ``flow-denied``; name ``Flow allowed by
  <rule>``; severity 1 for allowed flows, 3 for denied ones (both in CEF's Low band: a denied flow is
  the NSG doing its job, worth more attention than an allowed one but not an alert by itself).
- The CEF spec types ``src`` / ``dst`` as IPv4 addresses. IPv6 flows therefore carry their
  addresses in ``c6a2`` (labelled "Source IPv6 Address") and ``c6a3`` ("Destination IPv6 Address"),
  the convention F5, TippingPoint and others use; ``src`` / ``dst`` are then absent.
- ``in`` / ``out`` are bytes source->destination / destination->source (the spec's definition, not
  the NSG direction); packets go to ``cn1`` / ``cn2``. Absent counters (state B, NSG v1) are omitted.
- ``act`` is ``Allow`` / ``Deny`` (Azure's own words); ``deviceDirection`` 0 inbound, 1 outbound;
  the NIC's MAC goes to ``dmac`` for inbound flows (the NIC is the destination), else ``smac``.
- Custom strings: cs1 rule, cs2 NSG or flow log name, cs3 subscription, cs4 resource group,
  cs5 flow state (Begin/Continuing/End/Denied; absent for NSG v1), cs6 Community ID;
  ``flexString1`` the VNet encryption state; ``deviceExternalId`` the resource id of the NSG or
  flow log; ``externalId`` the deterministic event id.
- Escaping per the spec: header fields escape ``\\`` and ``|``; extension values escape ``\\``,
  ``=``, newline (``\\n``) and carriage return (``\\r``). The spec allows multi-line text only in
  extension values, so CR/LF in a header field (the rule name inside ``name``) become spaces; the
  exact rule is always in ``cs1``.

Per-event work is a few dict lookups and one concatenation: everything that depends only on the
FlowContext is rendered once per distinct context, everything that depends on the 5-tuple once per
5-tuple (with its Community ID), and the few shapes of the rest once per formatter.
"""

from __future__ import annotations

from collections.abc import Sequence

from forwarder.flowlog.community_id import community_id
from forwarder.flowlog.model import FlowContext, FlowEvent

VENDOR = "Microsoft"
PRODUCTS = {"nsg": "Azure NSG Flow Logs", "vnet": "Azure VNet Flow Logs"}
SIGNATURES = {True: ("flow-allowed", "Flow allowed", "1"), False: ("flow-denied", "Flow denied", "3")}
ACTIONS = {True: "Allow", False: "Deny"}
FLOW_STATES = {"B": "Begin", "C": "Continuing", "E": "End", "D": "Denied"}
NAME_LABELS = {"nsg": "NetworkSecurityGroup", "vnet": "FlowLog"}

# IANA keywords; numbers without a well-known name are written as the number.
PROTOCOL_NAMES = {1: "ICMP", 2: "IGMP", 4: "IPv4", 6: "TCP", 17: "UDP", 41: "IPv6", 47: "GRE", 50: "ESP", 51: "AH",
                  58: "IPv6-ICMP", 132: "SCTP"}  # fmt: skip
_PROTO = [PROTOCOL_NAMES.get(n, str(n)) for n in range(256)]

_COUNTERS = " in=%d out=%d cn1=%d cn1Label=PacketsSourceToDestination cn2=%d cn2Label=PacketsDestinationToSource"
_CACHE_MAX = 65_536
_CTX_CACHE_MAX = 4096


def escape_header(value: str) -> str:
    """A header field: backslash and pipe escaped; CR/LF, which the spec does not allow there, become spaces."""
    value = _sanitise(value)
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def escape_value(value: str) -> str:
    """An extension value: backslash, equals sign, newline and carriage return escaped."""
    value = _sanitise(value)
    return value.replace("\\", "\\\\").replace("=", "\\=").replace("\n", "\\n").replace("\r", "\\r")


def _sanitise(value: str) -> str:
    # Bytes that were not UTF-8 reach us as lone surrogates (surrogateescape); they cannot be encoded.
    if value.isascii():
        return value
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that did not come from a byte (a JSON \ud800 escape)
        return value.encode("utf-8", "replace").decode("utf-8")


def colon_mac(mac: str) -> str:
    """'AA-BB-CC-DD-EE-FF' (the model's form) to the colon form CEF specifies."""
    return mac.replace("-", ":")


class CefFormatter:
    name = "cef"
    content_type = "text/plain"

    def __init__(self) -> None:
        # content of a context -> (heads by allowed, tails by inbound)
        self._ctx_pieces: dict[tuple[object, ...], tuple[tuple[str, str], tuple[str, str]]] = {}
        self._addr: dict[tuple[str, str, int, int, int], str] = {}
        self._shapes: dict[tuple[bool, bool, str, str], str] = {}
        self._last_ctx: FlowContext | None = None
        self._last_pieces: tuple[tuple[str, str], tuple[str, str]] = (("", ""), ("", ""))

    def format(self, event: FlowEvent) -> str:
        return self.format_many((event,))[0]

    def format_many(self, events: Sequence[FlowEvent]) -> list[str]:
        out: list[str] = []
        append = out.append
        addr_cache = self._addr
        shapes = self._shapes
        last_ctx = self._last_ctx
        heads, tails = self._last_pieces
        counters_fmt = _COUNTERS
        for e in events:
            ctx, eid, ts, src, dst, sp, dp, pr, inbound, allowed, state, enc, p1, b1, p2, b2 = e
            if ctx is not last_ctx:
                heads, tails = self._pieces(ctx)
                last_ctx = ctx
            key = (src, dst, sp, dp, pr)
            addr = addr_cache.get(key)
            if addr is None:
                addr = self._addr_piece(key)
            shape = shapes.get((allowed, inbound, state, enc))
            if shape is None:
                shape = self._shape_piece(allowed, inbound, state, enc)
            if b1 is not None and b2 is not None and p1 is not None and p2 is not None:
                counters = counters_fmt % (b1, b2, p1, p2)
            elif b1 is None and b2 is None and p1 is None and p2 is None:
                counters = ""
            else:
                counters = _partial_counters(p1, b1, p2, b2)
            append("".join((heads[allowed], str(ts), " externalId=", eid, addr, shape, counters, tails[inbound])))
        self._last_ctx = last_ctx
        self._last_pieces = (heads, tails)
        return out

    def _pieces(self, ctx: FlowContext) -> tuple[tuple[str, str], tuple[str, str]]:
        """Header and trailing extension of a context, cached by content: records repeat their groups."""
        key = (ctx.kind, ctx.version, ctx.rule, ctx.name, ctx.subscription_id, ctx.resource_group,
               ctx.resource_id, ctx.mac)  # fmt: skip
        pieces = self._ctx_pieces.get(key)
        if pieces is None:
            if len(self._ctx_pieces) >= _CTX_CACHE_MAX:
                self._ctx_pieces.clear()
            pieces = self._ctx_pieces[key] = _context_pieces(ctx)
        return pieces

    def _addr_piece(self, key: tuple[str, str, int, int, int]) -> str:
        src, dst, sp, dp, pr = key
        cid = community_id(src, dst, sp, dp, pr).replace("=", "\\=")
        if ":" in src:
            addrs = f" c6a2={src} c6a2Label=Source IPv6 Address c6a3={dst} c6a3Label=Destination IPv6 Address"
        else:
            addrs = f" src={src} dst={dst}"
        piece = f"{addrs} spt={sp} dpt={dp} proto={_PROTO[pr]} cs6={cid} cs6Label=CommunityId"
        if len(self._addr) >= _CACHE_MAX:
            self._addr.clear()
        self._addr[key] = piece
        return piece

    def _shape_piece(self, allowed: bool, inbound: bool, state: str, enc: str) -> str:
        piece = f" act={ACTIONS[allowed]} deviceDirection={0 if inbound else 1}"
        if state:
            piece += f" cs5={escape_value(FLOW_STATES.get(state, state))} cs5Label=FlowState"
        if enc:
            piece += f" flexString1={escape_value(enc)} flexString1Label=Encryption"
        if len(self._shapes) >= _CACHE_MAX:
            self._shapes.clear()
        self._shapes[(allowed, inbound, state, enc)] = piece
        return piece


def _context_pieces(ctx: FlowContext) -> tuple[tuple[str, str], tuple[str, str]]:
    product = escape_header(PRODUCTS.get(ctx.kind, f"Azure {ctx.kind} Flow Logs"))
    rule_h = escape_header(ctx.rule)

    def head(allowed: bool) -> str:
        sig, name, severity = SIGNATURES[allowed]
        if ctx.rule:
            name += " by " + rule_h
        return f"CEF:0|{VENDOR}|{product}|{ctx.version}|{sig}|{name}|{severity}|rt="

    common = ""
    for key, label, value in (
        ("cs1", "Rule", ctx.rule),
        ("cs2", NAME_LABELS.get(ctx.kind, "FlowLog"), ctx.name),
        ("cs3", "SubscriptionId", ctx.subscription_id),
        ("cs4", "ResourceGroup", ctx.resource_group),
    ):
        if value:
            common += f" {key}={escape_value(value)} {key}Label={label}"
    if ctx.resource_id:
        common += " deviceExternalId=" + escape_value(ctx.resource_id)
    mac = colon_mac(ctx.mac)
    outbound_tail = f" smac={mac}{common}" if mac else common
    inbound_tail = f" dmac={mac}{common}" if mac else common
    return (head(False), head(True)), (outbound_tail, inbound_tail)


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
