"""The baseline the compiled core is measured against: the flow-log converter one writes in an afternoon.

orjson.loads of the whole PT1H.json, one dict per flow tuple, orjson.dumps of each, one line per event.
Its events carry about a quarter of the ECS fields the forwarder writes and no Community ID, it checks
nothing and reports nothing: a floor for what any converter costs, not a competitor.

Usage: python bench/naive_convert.py PT1H.json OUTPUT  (prints events=N on stderr)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

PROTOCOLS = {"T": "tcp", "U": "udp", "6": "tcp", "17": "udp", "1": "icmp"}


def groups(record: dict[str, Any]) -> list[tuple[str, list[str]]]:
    if "flowRecords" in record:
        return [(g["rule"], g["flowTuples"]) for acl in record["flowRecords"]["flows"] for g in acl["flowGroups"]]
    return [(rule["rule"], mac["flowTuples"]) for rule in record["properties"]["flows"] for mac in rule["flows"]]


def main() -> None:
    blob = orjson.loads(Path(sys.argv[1]).read_bytes())
    events = 0
    with open(sys.argv[2], "wb") as out:
        for record in blob["records"]:
            lines = []
            vnet = "flowRecords" in record
            for rule, tuples in groups(record):
                for t in tuples:
                    f = t.split(",")
                    event = {
                        "@timestamp": int(f[0]) if vnet else int(f[0]) * 1000,
                        "event": {
                            "action": "flow",
                            "outcome": "success" if f[7] in ("A", "B", "C", "E") else "failure",
                        },
                        "source": {"ip": f[1], "port": int(f[3])},
                        "destination": {"ip": f[2], "port": int(f[4])},
                        "network": {"transport": PROTOCOLS.get(f[5], f[5]), "direction": f[6]},
                        "rule": {"name": rule},
                    }
                    lines.append(orjson.dumps(event))
            out.write(b"\n".join(lines) + b"\n")
            events += len(lines)
    print(f"events={events}", file=sys.stderr)


if __name__ == "__main__":
    main()
