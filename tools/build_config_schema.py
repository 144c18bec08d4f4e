"""Assemble schemas/config.schema.json from tools/config_schema_base.json and schemas/fragments/*.json.

Each sink and source type keeps its keys next to its code's owner in a fragment; users get one
self-contained schema file. Run `make schemas` after changing a fragment (a test checks it is current).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SINK_TYPES = ["file", "syslog", "splunk_hec", "elasticsearch", "http", "azure_monitor"]


# Absolute: a fragment with an $id of its own (for its local $defs) resolves "#/..." against itself.
ROOT_ID = "https://github.com/nsg-forwarder/nsg-forwarder/schemas/config.schema.json"
SHARED_SINK_KEYS = {
    "filter": {"$ref": f"{ROOT_ID}#/$defs/filter", "description": "This sink's own filter, instead of [filter]."},
    "aggregate": {"$ref": f"{ROOT_ID}#/$defs/aggregate"},
}


def build() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((ROOT / "tools" / "config_schema_base.json").read_text())
    assert schema["$id"] == ROOT_ID, "tools/config_schema_base.json's $id moved: change ROOT_ID with it"
    fragments = ROOT / "schemas" / "fragments"
    azure = fragments / "source-azure_blob.json"
    if azure.exists():
        schema["$defs"]["source_azure_blob"] = json.loads(azure.read_text())
    rules = schema["properties"]["sink"]["items"]["allOf"]
    for sink_type in SINK_TYPES:
        frag = fragments / f"sink-{sink_type}.json"
        if not frag.exists():
            continue
        definition = json.loads(frag.read_text())
        definition.pop("$schema", None)
        # Keys every sink has, whatever its type: reduction happens before the sink sees its events.
        definition["properties"].update(SHARED_SINK_KEYS)
        schema["$defs"][f"sink_{sink_type}"] = definition
        when = {"properties": {"type": {"const": sink_type}}}
        rules.append({"if": when, "then": {"$ref": f"#/$defs/sink_{sink_type}"}})
    return schema


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    target = ROOT / "schemas" / "config.schema.json"
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if target.exists() and target.read_text() == text else 1)
    target.write_text(text)
    print(f"wrote {target}")
