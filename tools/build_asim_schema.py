"""Build schemas/asim.schema.json from the ASimNetworkSessionLogs table reference (column names and types)
and the ASIM Network Session schema 0.2.7 (mandatory fields, enumerations, logical types).

The table reference is tests/reference/sentinel/asimnetworksessionlogs.md (Microsoft's generated
page). Columns the service fills itself (TenantId, Type, _ResourceId, ...) are not in the schema: a row
that carries one is not a row to send. Every column keeps its Log Analytics type in ``x-column-type``,
from which tools/build_sentinel_deploy.py writes the DCR stream declaration and the custom table.

Run `make schemas` after the reference changes (tests/test_format_asim.py checks the file is current).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "reference" / "sentinel" / "asimnetworksessionlogs.md"
TARGET = ROOT / "schemas" / "asim.schema.json"

# Filled by Log Analytics, or reserved column names of the Logs Ingestion API.
SERVICE_COLUMNS = frozenset(
    {"TenantId", "Type", "SourceSystem", "_ResourceId", "_SubscriptionId", "_BilledSize", "_IsBillable"}
)
# ASIM mandatory fields that are columns of the table (EventSchema is added by the stub parser at query time).
MANDATORY = [
    "TimeGenerated",
    "EventCount",
    "EventStartTime",
    "EventEndTime",
    "EventType",
    "EventResult",
    "EventProduct",
    "EventVendor",
    "EventSchemaVersion",
    "Dvc",
]

INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
DATETIME = {"type": "string", "format": "date-time", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z$"}
TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "int": INT32,
    "long": INT64,
    "real": {"type": "number"},
    "bool": {"type": "boolean"},
    "datetime": DATETIME,
    "dynamic": {},
}
DVC_ID_TYPES = [
    "AzureResourceId",
    "MDEid",
    "MD4IoTid",
    "VMConnectionId",
    "AwsVpcId",
    "VectraId",
    "AppGateId",
    "FQDN",
    "Other",
]
IP = {"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
MAC = {"pattern": "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"}
PORT = {"minimum": 0, "maximum": 65535}
COUNTER = {"minimum": 0}

# What ASIM 0.2.7 (normalization-schema-network.md, normalization-common-fields.md) says beyond the type.
RULES: dict[str, dict[str, Any]] = {
    "EventCount": {"minimum": 1},
    "EventType": {"enum": ["EndpointNetworkSession", "NetworkSession", "L2NetworkSession", "IDS", "Flow"]},
    "EventSubType": {"enum": ["Start", "End"]},
    "EventResult": {"enum": ["Success", "Partial", "Failure", "NA"]},
    "EventResultDetails": {
        "enum": [
            "Failover",
            "Invalid TCP",
            "Invalid Tunnel",
            "Maximum Retry",
            "Reset",
            "Routing issue",
            "Simulation",
            "Terminated",
            "Timeout",
            "Transient error",
            "Unknown",
            "NA",
        ]
    },
    "EventSeverity": {"enum": ["Informational", "Low", "Medium", "High"]},
    "EventSchemaVersion": {"const": "0.2.7"},
    "EventProduct": {"minLength": 1},
    "EventVendor": {"minLength": 1},
    "Dvc": {"minLength": 1},
    "DvcAction": {
        "enum": [
            "Allow",
            "Deny",
            "Drop",
            "Drop ICMP",
            "Reset",
            "Reset Source",
            "Reset Destination",
            "Encrypt",
            "Decrypt",
            "VPNroute",
        ]
    },
    "DvcIdType": {"enum": DVC_ID_TYPES},
    "SrcDvcIdType": {"enum": DVC_ID_TYPES},
    "DstDvcIdType": {"enum": DVC_ID_TYPES},
    "NetworkDirection": {"enum": ["Inbound", "Outbound", "Local", "External", "Listen", "NA"]},
    "NetworkProtocolVersion": {"enum": ["IPv4", "IPv6"]},
    "NetworkProtocol": {"pattern": "^[A-Za-z0-9][A-Za-z0-9._+-]*$"},
    "NetworkApplicationProtocol": {"pattern": "^[^a-z]*$"},  # "The value should be in all uppercase"
    "NetworkIcmpCode": {"minimum": 0, "maximum": 255},
    "NetworkIcmpType": {"minLength": 1},
    "ThreatField": {"enum": ["SrcIpAddr", "DstIpAddr", "Domain", "DnsResponseName"]},
    "ThreatConfidence": {"minimum": 0, "maximum": 100},
    "ThreatRiskLevel": {"minimum": 0, "maximum": 100},
    "AdditionalFields": {"type": "object"},
}
for _side in ("Src", "Dst", "Dvc"):
    RULES[f"{_side}IpAddr"] = IP
    RULES[f"{_side}MacAddr"] = MAC
for _side in ("Src", "Dst"):
    RULES[f"{_side}PortNumber"] = PORT
    RULES[f"{_side}NatPortNumber"] = PORT
    RULES[f"{_side}NatIpAddr"] = IP
    RULES[f"{_side}Bytes"] = COUNTER
    RULES[f"{_side}Packets"] = COUNTER
RULES["NetworkBytes"] = COUNTER
RULES["NetworkPackets"] = COUNTER
RULES["ThreatIpAddr"] = IP

# "Conditional" fields: required when the field they qualify is set.
DEPENDENT = {
    "DvcId": ["DvcIdType"],
    "SrcDvcId": ["SrcDvcIdType"],
    "DstDvcId": ["DstDvcIdType"],
    "DvcDomain": ["DvcDomainType"],
    "SrcDomain": ["SrcDomainType"],
    "DstDomain": ["DstDomainType"],
    "SrcAppName": ["SrcAppType"],
    "SrcAppId": ["SrcAppType"],
    "DstAppName": ["DstAppType"],
    "DstAppId": ["DstAppType"],
    "SrcUserId": ["SrcUserIdType"],
    "DstUserId": ["DstUserIdType"],
    "SrcUsername": ["SrcUsernameType"],
    "DstUsername": ["DstUsernameType"],
    "SrcHostname": ["SrcIpAddr"],
    "DstHostname": ["DstIpAddr"],
    "ThreatIpAddr": ["ThreatField"],
}


def table_columns(reference: Path = REFERENCE) -> list[tuple[str, str, str]]:
    """(name, Log Analytics type, description) of every column of the table reference page."""
    text = reference.read_text(encoding="utf-8")
    section = text[text.index("## Columns") :]
    rows = re.findall(r"^\| (\w+) \| (\w+) \| (.*?) ?\|$", section, re.M)
    columns = [(name, kind, description.strip()) for name, kind, description in rows if name != "Column"]
    unknown = sorted({kind for _, kind, _ in columns} - set(TYPES))
    if unknown:
        raise SystemExit(f"{reference}: column types this tool does not know: {unknown}")
    return columns


def build(reference: Path = REFERENCE) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name, kind, description in table_columns(reference):
        if name in SERVICE_COLUMNS:
            continue
        prop: dict[str, Any] = {"description": description, "x-column-type": kind, **TYPES[kind]}
        prop.update(RULES.get(name, {}))
        properties[name] = prop
    missing = [name for name in [*MANDATORY, *RULES, *DEPENDENT] if name not in properties]
    if missing:
        raise SystemExit(f"{reference}: the table has no column {missing[0]!r} that ASIM 0.2.7 describes")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://nsg-forwarder.invalid/schemas/asim.schema.json",
        "title": "A row of the ASimNetworkSessionLogs table (ASIM Network Session 0.2.7)",
        "description": "Built by tools/build_asim_schema.py from the table's column reference and the ASIM "
        "Network Session schema 0.2.7: only the table's columns (none the service fills itself), each with "
        "its Log Analytics type (x-column-type), ASIM's mandatory fields, enumerations and logical types.",
        "type": "object",
        "additionalProperties": False,
        "required": MANDATORY,
        "dependentRequired": DEPENDENT,
        "properties": properties,
    }


def render(reference: Path = REFERENCE) -> str:
    return json.dumps(build(reference), indent=2) + "\n"


if __name__ == "__main__":
    if not REFERENCE.exists():
        print(f"skipped {TARGET.name}: the table reference is not at {REFERENCE}")
        sys.exit(0)
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if TARGET.exists() and TARGET.read_text() == text else 1)
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
