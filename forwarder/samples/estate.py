"""One NIC of a real estate, minute by minute: what aggregation is measured on.

A web server's NIC, mostly: a few long flows to the services it depends on (a database, a cache,
storage, Azure's wire server) that continue minute after minute, short inbound HTTPS sessions from a
pool of clients (a B tuple and an E tuple each), DNS lookups, and now and then a port scan from the
internet that the NSG denies. Volumes follow ``tuples_per_minute``; the flows come from the spec's seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from forwarder.samples.generator import BlobSpec, envelope, record_time

_SERVICES = [("10.0.1.5", 1433), ("10.0.1.6", 6379), ("52.239.140.10", 443), ("168.63.129.16", 80)]
_CLIENTS = [f"20.{40 + i // 8}.{i % 8 * 16}.{10 + i}" for i in range(24)]
_SCANNERS = ["94.102.49.190", "185.220.101.4", "45.155.205.233"]
_LOCAL = "10.0.0.4"
_DNS = "168.63.129.16"


@dataclass
class _Long:
    dst: str
    dport: int
    sport: int
    opened: bool = False


class EstateNic:
    def __init__(self, rng: random.Random, spec: BlobSpec):
        self.rng = rng
        self.spec = spec
        self.long = [_Long(dst, port, rng.randint(20000, 60000)) for dst, port in _SERVICES]

    def record(self, minute: int) -> dict[str, object]:
        rng, spec = self.rng, self.spec
        ts, time_str = record_time(rng, spec, minute)
        allow_in, deny, allow_out = (
            "UserRule_Allow-HTTPS",
            "DefaultRule_DenyAllInBound",
            "DefaultRule_AllowVnetOutBound",
        )
        groups: dict[str, list[str]] = {allow_in: [], deny: [], allow_out: []}
        budget = spec.tuples_per_minute
        # Long flows: one tuple a minute each (B the first time, C after), now and then one ends and reopens.
        for flow in self.long:
            state = "C" if flow.opened else "B"
            if flow.opened and rng.random() < 0.05:
                state = "E"
            groups[allow_out].append(self._tuple(ts + rng.randint(0, 59), _LOCAL, flow.dst, flow.sport, flow.dport,
                                                 False, "A", state))  # fmt: skip
            flow.opened = state != "E"
            if state == "E":
                flow.sport = rng.randint(20000, 60000)
        budget -= len(self.long)
        # A scan now and then: one source, many ports, all denied.
        if rng.random() < 0.1:
            scanner = rng.choice(_SCANNERS)
            for port in rng.sample(range(1, 10000), min(12, max(budget // 3, 0))):
                groups[deny].append(self._tuple(ts + rng.randint(0, 59), scanner, _LOCAL, rng.randint(1024, 65535),
                                                port, True, "D", "B"))  # fmt: skip
                budget -= 1
        # DNS, then short HTTPS sessions (B and E) for the rest.
        for _ in range(max(budget // 10, 1)):
            groups[allow_out].append(self._tuple(ts + rng.randint(0, 59), _LOCAL, _DNS, rng.randint(1024, 65535), 53,
                                                 False, "A", "E", udp=True))  # fmt: skip
            budget -= 1
        while budget > 1:
            client, sport = rng.choice(_CLIENTS), rng.randint(1024, 65535)
            begin = ts + rng.randint(0, 50)
            groups[allow_in].append(self._tuple(begin, client, _LOCAL, sport, 443, True, "A", "B"))
            groups[allow_in].append(self._tuple(begin + rng.randint(0, 9), client, _LOCAL, sport, 443, True, "A", "E"))
            budget -= 2
        return envelope(spec, time_str, groups)

    def _tuple(self, ts: int, src: str, dst: str, sport: int, dport: int, inbound: bool, decision: str, state: str,
               udp: bool = False) -> str:  # fmt: skip
        rng, spec = self.rng, self.spec
        direction = "I" if inbound else "O"
        counters = [rng.randint(1, 40), rng.randint(80, 40000), rng.randint(1, 40), rng.randint(80, 40000)]
        if spec.kind == "vnet":
            vstate = "D" if decision == "D" else state
            if vstate in ("B", "D"):
                counters = [0, 0, 0, 0]
            proto = "17" if udp else "6"
            line = f"{ts * 1000 + rng.randint(0, 999)},{src},{dst},{sport},{dport},{proto},{direction},{vstate},NX,"
            return line + ",".join(map(str, counters))
        base = f"{ts},{src},{dst},{sport},{dport},{'U' if udp else 'T'},{direction},{decision}"
        if spec.version == 1:
            return base
        if state == "B":
            return base + ",B,,,,"
        return base + f",{state}," + ",".join(map(str, counters))
