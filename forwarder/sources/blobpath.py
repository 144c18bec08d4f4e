"""Blob names as Network Watcher writes them: the resource prefix, the hour folder and the NIC.

NSG flow logs::

    resourceId=/SUBSCRIPTIONS/{sub}/RESOURCEGROUPS/{rg}/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/{nsg}/
        y={yyyy}/m={MM}/d={dd}/h={HH}/m=00/macAddress={MAC}/PT1H.json

VNet flow logs::

    flowLogResourceID=/{SUB}_{RG}/{NETWORKWATCHER}_{REGION}_{FLOWLOG}/y=.../m=.../d=.../h=.../m=00/macAddress={MAC}/PT1H.json

Everything up to ``y=`` is the *resource prefix* (one NSG or one flow log); discovery lists the
hour folders under it (``{prefix}y=2026/m=11/d=25/h=10/``) instead of the whole container.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

NSG_ROOT = "resourceId=/"
VNET_ROOT = "flowLogResourceID=/"
LAYOUT_ROOTS = (NSG_ROOT, VNET_ROOT)
BLOB_FILE = "PT1H.json"
HOUR = timedelta(hours=1)

_NAME_RE = re.compile(
    r"(?P<prefix>(?:resourceId|flowLogResourceID)=/(?:[^/]+/)+?)"
    r"y=(?P<y>\d{4})/m=(?P<mo>\d{2})/d=(?P<d>\d{2})/h=(?P<h>\d{2})/m=(?P<mi>\d{2})/"
    r"macAddress=(?P<mac>[^/]+)/PT1H\.json"
)
_HOUR_FOLDERS_RE = re.compile(r"y=\d{4}/m=\d{2}/d=\d{2}/h=\d{2}/m=\d{2}/")
# One level of the time hierarchy as a listing returns it: "y=2026/", "m=11/", "d=25/", "h=10/".
_SEGMENT_RE = re.compile(r"(?P<key>[ymdh])=(?P<value>\d{2,4})/")


@dataclass(frozen=True, slots=True)
class BlobPath:
    prefix: str  # the resource prefix, ending with "/" right before "y="
    hour: datetime  # the hour the blob covers, UTC
    mac: str  # the NIC's MAC address as written in the name ("000D3AF87856")

    @property
    def kind(self) -> Literal["nsg", "vnet"]:
        return "nsg" if self.prefix.startswith(NSG_ROOT) else "vnet"

    @property
    def hour_prefix(self) -> str:
        return hour_prefix(self.prefix, self.hour)


def parse(name: str) -> BlobPath | None:
    """The parts of a flow-log blob name, or None if the name is not laid out like one."""
    m = _NAME_RE.fullmatch(name)
    if m is None:
        return None
    try:
        hour = datetime(int(m["y"]), int(m["mo"]), int(m["d"]), int(m["h"]), tzinfo=UTC)
    except ValueError:
        return None
    return BlobPath(prefix=m["prefix"], hour=hour, mac=m["mac"])


def floor_hour(t: datetime) -> datetime:
    """The start of the UTC hour holding t (naive datetimes are taken as UTC)."""
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.replace(minute=0, second=0, microsecond=0)


def hour_prefix(prefix: str, hour: datetime) -> str:
    """The folder holding every blob of one resource for one hour: ``{prefix}y=2026/m=11/d=25/h=10/``."""
    h = floor_hour(hour)
    return f"{prefix}y={h.year:04d}/m={h.month:02d}/d={h.day:02d}/h={h.hour:02d}/"


def day_prefix(prefix: str, day: datetime) -> str:
    return f"{prefix}y={day.year:04d}/m={day.month:02d}/d={day.day:02d}/"


def segment(parent: str, child: str) -> tuple[str, int] | None:
    """("y", 2026) for child "{parent}y=2026/"; None if child is not one time level below parent."""
    if not child.startswith(parent):
        return None
    m = _SEGMENT_RE.fullmatch(child, len(parent))
    if m is None:
        return None
    return m["key"], int(m["value"])


def is_time_level(parent: str, child: str) -> bool:
    """True when child is the first time level (``y=YYYY/``) under parent, i.e. parent is a resource prefix."""
    seg = segment(parent, child)
    return seg is not None and seg[0] == "y"


def hour_in_key(key: str) -> datetime | None:
    """The hour of a blob from any string that ends with its name ("account/container/resourceId=...")."""
    starts = [i for i in (key.find(root) for root in LAYOUT_ROOTS) if i >= 0]
    parsed = parse(key[min(starts) :]) if starts else None
    return parsed.hour if parsed else None


def stream_key(name: str) -> str:
    """What a NIC's hourly blobs have in common: the name without its hour folders (any folder above kept)."""
    return _HOUR_FOLDERS_RE.sub("", name, count=1)
