"""deploy/sentinel: the ARM templates are generated from schemas/asim.schema.json and declare what the
Logs Ingestion API and the sink need (kind Direct, the stream the sink posts to, every column a row may
carry with its type, the output table, the role the sink's 401/403 messages name)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from forwarder.formats import formatter
from forwarder.sinks.azure_monitor import DEFAULT_STREAM, ROLE
from tests.support.events import SCHEMAS, validate_lines
from tests.support.formats import sample_events
from tools import build_sentinel_deploy

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "sentinel"
TEMPLATES = {"dcr-asim.json": "Microsoft-ASimNetworkSessionLogs", "dcr-custom-table.json": "Custom-NsgFlows_CL"}
STREAM_TYPES = {"string", "int", "long", "real", "boolean", "datetime", "dynamic"}  # data-collection-rule-structure


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DEPLOY / name).read_text())
    return doc


def test_templates_are_current() -> None:
    files = build_sentinel_deploy.render(json.loads((SCHEMAS / "asim.schema.json").read_text()))
    assert set(files) == set(TEMPLATES)
    for name, text in files.items():
        assert (DEPLOY / name).read_text() == text, f"{name} is out of date: run `make schemas`"


@pytest.mark.parametrize(("name", "output"), TEMPLATES.items())
def test_a_direct_dcr_feeds_the_table_with_every_column_a_row_may_carry(name: str, output: str) -> None:
    template = load(name)
    (dcr,) = [r for r in template["resources"] if r["type"] == "Microsoft.Insights/dataCollectionRules"]
    assert dcr["kind"] == "Direct" and dcr["apiVersion"] >= "2023-03-11", "Direct DCRs have their own endpoint"
    props = dcr["properties"]
    assert list(props["streamDeclarations"]) == [DEFAULT_STREAM], "the stream the sink posts to by default"
    (flow,) = props["dataFlows"]
    assert (flow["streams"], flow["outputStream"], flow["transformKql"]) == ([DEFAULT_STREAM], output, "source")
    declared = {c["name"]: c["type"] for c in props["streamDeclarations"][DEFAULT_STREAM]["columns"]}
    assert set(declared.values()) <= STREAM_TYPES
    schema = json.loads((SCHEMAS / "asim.schema.json").read_text())
    assert set(declared) == set(schema["properties"])
    # What the rows really carry arrives typed as declared.
    json_types = {"string": str, "datetime": str, "int": int, "long": int, "dynamic": dict}
    for row in validate_lines("asim", formatter("asim").format_many(sample_events())):
        for column, value in row.items():
            assert isinstance(value, json_types[declared[column]]), (column, declared[column])


@pytest.mark.parametrize("name", TEMPLATES)
def test_the_forwarders_identity_gets_the_role_on_the_dcr(name: str) -> None:
    template = load(name)
    (grant,) = [r for r in template["resources"] if r["type"] == "Microsoft.Authorization/roleAssignments"]
    assert "Microsoft.Insights/dataCollectionRules" in grant["scope"], "scoped to the DCR, not wider"
    assert build_sentinel_deploy.MONITORING_METRICS_PUBLISHER in grant["properties"]["roleDefinitionId"]
    assert ROLE in grant["properties"]["description"]
    assert grant["properties"]["principalId"] == "[parameters('principalId')]"
    # Every parameter used is declared, and the outputs are what the sink's config needs.
    used = set(re.findall(r"parameters\('(\w+)'\)", json.dumps(template)))
    assert used <= set(template["parameters"])
    assert set(template["outputs"]) == {"endpoint", "dcr_immutable_id", "stream"}


def test_the_custom_table_has_the_same_columns_and_is_created_first() -> None:
    template = load("dcr-custom-table.json")
    table, dcr, _ = template["resources"]
    assert table["type"] == "Microsoft.OperationalInsights/workspaces/tables"
    assert table["properties"]["schema"]["name"] == "NsgFlows_CL"
    columns = table["properties"]["schema"]["columns"]
    assert columns[0] == {"name": "TimeGenerated", "type": "dateTime"}
    stream = dcr["properties"]["streamDeclarations"][DEFAULT_STREAM]["columns"]
    assert [c["name"] for c in columns] == [c["name"] for c in stream]
    assert all(not c["name"].startswith("_") for c in columns), "custom columns may not start with _"
    assert dcr["dependsOn"] and "NsgFlows_CL" in dcr["dependsOn"][0]
