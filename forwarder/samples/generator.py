"""Seeded, deterministic flow-log generator that lays blobs out exactly as Azure Network Watcher does.

A PT1H.json is a block blob: a head block ``{"records":[``, one data block per minute (every one
after the first starts with a comma), and a tail block ``]}``. The demo, the tests and the
benchmarks all build their input here, so the layout lives in one place.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from forwarder.flowlog.model import LogKind

NSG_CONTAINER = "insights-logs-networksecuritygroupflowevent"
VNET_CONTAINER = "insights-logs-flowlogflowevent"
HEAD = b'{"records":['
TAIL = b"]}"

_RULES_NSG = ["DefaultRule_AllowInternetOutBound", "DefaultRule_DenyAllInBound", "UserRule_Allow-HTTPS"]
_RULES_VNET = ["DefaultRule_AllowInternetOutBound", "DefaultRule_DenyAllInBound", "UserRule_Allow-SSH"]
_PUBLIC_V4 = ["13.67.143.118", "52.239.140.10", "94.102.49.190", "185.220.101.4", "20.38.98.100"]
_PUBLIC_V6 = ["2603:1030:800:5::bfee:a418", "2001:db8:85a3::8a2e:370:7334"]


@dataclass(frozen=True)
class BlobSpec:
    """One PT1H.json to generate: which log, which NIC, which hour, how much traffic."""

    kind: LogKind = "nsg"
    version: int = 2
    subscription: str = "00000000-0000-0000-0000-000000000000"
    resource_group: str = "FABRIKAMRG"
    name: str = "FABRIKAM-NSG"  # NSG name, or flow log name for VNet
    mac: str = "000D3AF87856"
    hour: datetime = datetime(2026, 11, 25, 10, tzinfo=UTC)
    minutes: int = 60
    tuples_per_minute: int = 20
    ipv6_share: float = 0.1
    seed: int = 1
    # "flows": every tuple a random flow of a few services (caches and parsers get a workout);
    # "estate": how a real NIC looks (forwarder/samples/estate.py), for measuring aggregation.
    mix: str = "flows"

    @property
    def container(self) -> str:
        return NSG_CONTAINER if self.kind == "nsg" else VNET_CONTAINER

    @property
    def resource_id(self) -> str:
        if self.kind == "nsg":
            return (
                f"/SUBSCRIPTIONS/{self.subscription.upper()}/RESOURCEGROUPS/{self.resource_group.upper()}"
                f"/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/{self.name.upper()}"
            )
        return (
            f"/SUBSCRIPTIONS/{self.subscription.upper()}/RESOURCEGROUPS/NETWORKWATCHERRG"
            f"/PROVIDERS/MICROSOFT.NETWORK/NETWORKWATCHERS/NETWORKWATCHER_EASTUS/FLOWLOGS/{self.name.upper()}"
        )

    @property
    def blob_name(self) -> str:
        h = self.hour
        when = f"y={h.year:04d}/m={h.month:02d}/d={h.day:02d}/h={h.hour:02d}/m=00/macAddress={self.mac}"
        if self.kind == "nsg":
            return f"resourceId={self.resource_id}/{when}/PT1H.json"
        return (
            f"flowLogResourceID=/{self.subscription.upper()}_NETWORKWATCHERRG"
            f"/NETWORKWATCHER_EASTUS_{self.name.upper()}/{when}/PT1H.json"
        )


@dataclass(frozen=True, slots=True)
class _Flow:
    src: str
    dst: str
    sport: int
    dport: int
    inbound: bool
    udp: bool
    icmp: bool
    encryption: str


_MAX_ACTIVE = 5000


def _new_flow(rng: random.Random, spec: BlobSpec, local_ip: str) -> tuple[_Flow, bool]:
    v6 = rng.random() < spec.ipv6_share
    remote = rng.choice(_PUBLIC_V6 if v6 else _PUBLIC_V4)
    local = "fd00::4" if v6 else local_ip
    inbound = rng.random() < 0.4
    src, dst = (remote, local) if inbound else (local, remote)
    dport = rng.choice([443, 80, 22, 3389, 53, 123])
    icmp = spec.kind == "vnet" and dport not in (53, 123) and rng.random() < 0.1
    sport, dport = (8, 0) if icmp else (rng.randint(1024, 65535), dport)
    enc = rng.choice(["X", "NX", "NX_HW_NOT_SUPPORTED"]) if spec.kind == "vnet" else ""
    flow = _Flow(src, dst, sport, dport, inbound, dport in (53, 123), icmp, enc)
    return flow, inbound and rng.random() < 0.5


def _tuple(rng: random.Random, spec: BlobSpec, ts: int, flow: _Flow, state: str, denied: bool) -> str:
    counters = [rng.randint(1, 50), rng.randint(60, 60000), rng.randint(1, 50), rng.randint(60, 60000)]
    direction = "I" if flow.inbound else "O"
    head = f"{flow.src},{flow.dst},{flow.sport},{flow.dport}"
    if spec.kind == "vnet":
        proto = "1" if flow.icmp else ("17" if flow.udp else "6")
        vstate = "D" if denied else state
        if vstate in ("B", "D"):
            counters = [0, 0, 0, 0]
        line = f"{ts * 1000 + rng.randint(0, 999)},{head},{proto},{direction},{vstate},{flow.encryption},"
        return line + ",".join(map(str, counters))
    base = f"{ts},{head},{'U' if flow.udp else 'T'},{direction},{'D' if denied else 'A'}"
    if spec.version == 1:
        return base
    if state == "B":
        return base + ",B,,,,"
    return base + f",{state}," + ",".join(map(str, counters))


def _record(rng: random.Random, spec: BlobSpec, minute: int, active: list[_Flow]) -> dict[str, object]:
    """One minute of one NIC. Flows live across minutes: B when they open, C while they last, E at the end;
    denied flows appear once. Real logs look like this, and it is what makes per-flow caches pay off."""
    ts, time_str = record_time(rng, spec, minute)
    rules = _RULES_NSG if spec.kind == "nsg" else _RULES_VNET
    groups: dict[str, list[str]] = {r: [] for r in rules}
    for _ in range(spec.tuples_per_minute):
        t = ts + rng.randint(0, 59)
        r = rng.random()
        if active and r < 0.5:
            i = rng.randrange(len(active))
            flow = active[i]
            state = "C"
            if r < 0.2:
                state = "E"
                active[i] = active[-1]
                active.pop()
            line, denied = _tuple(rng, spec, t, flow, state, False), False
        else:
            flow, denied = _new_flow(rng, spec, "10.0.0.4")
            if not denied and len(active) < _MAX_ACTIVE:
                active.append(flow)
            line = _tuple(rng, spec, t, flow, "B", denied)
        rule = rules[1] if denied else (rules[2] if flow.dport in (443, 22) else rules[0])
        groups[rule].append(line)
    return envelope(spec, time_str, groups)


def record_time(rng: random.Random, spec: BlobSpec, minute: int) -> tuple[int, str]:
    """The minute's first second, and the record's own time: Azure stamps a record with the time it was
    flushed, to 100 ns (so a rewrite has other times)."""
    start = spec.hour + timedelta(minutes=minute)
    flushed = start + timedelta(seconds=35, microseconds=rng.randrange(1_000_000))
    return int(start.timestamp()), flushed.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{rng.randrange(10)}Z"


def envelope(spec: BlobSpec, time_str: str, groups: dict[str, list[str]]) -> dict[str, object]:
    """One record around its rule groups' tuples, as Azure writes an NSG or a VNet flow log record."""
    used = [(r, ts_list) for r, ts_list in groups.items() if ts_list]
    if spec.kind == "nsg":
        return {
            "time": time_str,
            "systemId": "d0b1b3ae-0000-4f55-9a0b-fd0f04fa4a6e",
            "macAddress": spec.mac,
            "category": "NetworkSecurityGroupFlowEvent",
            "resourceId": spec.resource_id,
            "operationName": "NetworkSecurityGroupFlowEvents",
            "properties": {
                "Version": spec.version,
                "flows": [{"rule": r, "flows": [{"mac": spec.mac, "flowTuples": tl}]} for r, tl in used],
            },
        }
    return {
        "time": time_str,
        "flowLogVersion": 4,
        "flowLogGUID": "abcdef01-2345-6789-0abc-def012345678",
        "macAddress": spec.mac,
        "category": "FlowLogFlowEvent",
        "flowLogResourceID": spec.resource_id,
        "targetResourceID": (
            f"/subscriptions/{spec.subscription}/resourceGroups/{spec.resource_group}"
            "/providers/Microsoft.Network/virtualNetworks/vnet1"
        ),
        "operationName": "FlowLogFlowEvent",
        "flowRecords": {
            "flows": [
                {
                    "aclID": "00000000-1234-abcd-ef00-c1c2c3c4c5c6",
                    "flowGroups": [{"rule": r, "flowTuples": tl} for r, tl in used],
                }
            ]
        },
    }


def data_blocks(spec: BlobSpec) -> Iterator[bytes]:
    """The data blocks of a blob in commit order: one record per minute, commas between them."""
    rng = random.Random(f"{spec.seed}:{spec.blob_name}")
    if spec.mix == "estate":
        from forwarder.samples.estate import EstateNic

        nic = EstateNic(rng, spec)
        records = (nic.record(minute) for minute in range(spec.minutes))
    else:
        active: list[_Flow] = []
        records = (_record(rng, spec, minute, active) for minute in range(spec.minutes))
    for minute, record in enumerate(records):
        body = orjson.dumps(record)
        yield body if minute == 0 else b"," + body


def blob_bytes(spec: BlobSpec) -> bytes:
    """The whole committed blob: head, every data block, tail."""
    return HEAD + b"".join(data_blocks(spec)) + TAIL


def write_blob(root: Path, spec: BlobSpec) -> Path:
    """Write one blob under root/<container>/<blob name>, streaming block by block."""
    path = root / spec.container / spec.blob_name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(HEAD)
        for block in data_blocks(spec):
            out.write(block)
        out.write(TAIL)
    return path


SAMPLE_LAST_HOUR = datetime(2026, 11, 25, 10, tzinfo=UTC)  # the tests' and benchmarks' fixed estate


def sample_specs(
    hours: int = 2, seed: int = 1, tuples_per_minute: int = 20, first_hour: datetime | None = None
) -> list[BlobSpec]:
    """A small realistic estate: two NSGs (v1 and v2, two NICs) and one VNet flow log, for ``hours`` hours
    from ``first_hour`` (default: the hours up to SAMPLE_LAST_HOUR, which the tests rely on)."""
    if first_hour is None:
        first_hour = SAMPLE_LAST_HOUR - timedelta(hours=hours - 1)
    first_hour = first_hour.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    specs: list[BlobSpec] = []
    for h in range(hours):
        hour = first_hour + timedelta(hours=h)
        common = {"hour": hour, "seed": seed, "tuples_per_minute": tuples_per_minute}
        specs.append(BlobSpec(kind="nsg", version=2, name="WEB-NSG", mac="000D3AF87856", **common))  # type: ignore[arg-type]
        specs.append(BlobSpec(kind="nsg", version=2, name="WEB-NSG", mac="000D3AF87857", **common))  # type: ignore[arg-type]
        specs.append(BlobSpec(kind="nsg", version=1, name="LEGACY-NSG", mac="000D3A1B2C3D", **common))  # type: ignore[arg-type]
        specs.append(BlobSpec(kind="vnet", version=4, name="VNET1-FLOWLOG", mac="0022487BC205", **common))  # type: ignore[arg-type]
    return specs
