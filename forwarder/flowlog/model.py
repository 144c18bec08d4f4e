"""The typed shapes between parsing and formatting: one FlowContext per rule group, one FlowEvent per tuple."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

LogKind = Literal["nsg", "vnet"]


@dataclass(frozen=True, slots=True, eq=False)
class FlowContext:
    """Everything that is the same for every tuple of one rule group of one record.

    Formatters cache their constant output per context (compared by identity), so a context is
    built once per rule group, never per tuple.
    """

    kind: LogKind
    version: int
    source: str  # identity of the blob or file: storage account/container/blob name
    record_offset: int  # byte offset of the record's opening brace in the blob
    record_time: str
    resource_id: str  # NSG resourceId or VNet flowLogResourceID, as written
    subscription_id: str
    resource_group: str
    name: str  # the NSG, or the VNet flow log
    mac: str  # NIC MAC in RFC 7042 form as ECS wants it: AA-BB-CC-DD-EE-FF ("" if unknown)
    rule: str
    category: str = ""
    operation_name: str = ""
    system_id: str = ""
    acl_id: str = ""
    target_resource_id: str = ""
    flow_log_guid: str = ""
    id_prefix: str = field(default="", compare=False)  # deterministic event id prefix per record


class FlowEvent(NamedTuple):
    """One flow tuple, normalised. NamedTuple because a million are built per second."""

    ctx: FlowContext
    event_id: str
    timestamp_ms: int
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    protocol: int  # IANA protocol number
    inbound: bool
    allowed: bool
    state: str  # "B", "C", "E", "D", or "" for NSG version 1 (no state)
    encryption: str  # VNet only ("X", "NX", ...), "" otherwise
    packets_s2d: int | None
    bytes_s2d: int | None
    packets_d2s: int | None
    bytes_d2s: int | None


class Event(Protocol):
    """What sinks and the pipeline read of any event they carry: a tuple's FlowEvent, or an aggregate."""

    @property
    def ctx(self) -> FlowContext: ...

    @property
    def event_id(self) -> str: ...

    @property
    def timestamp_ms(self) -> int: ...

    @property
    def allowed(self) -> bool: ...


def utf8_safe(s: str) -> str:
    """``s`` with every lone surrogate as U+FFFD, so that any encoder takes it.

    Bytes that were not UTF-8 reach the model as lone surrogates (surrogateescape keeps byte offsets
    exact); a JSON escape such as "\\ud800" gives one that no byte stands behind.
    """
    if s.isascii():
        return s
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
