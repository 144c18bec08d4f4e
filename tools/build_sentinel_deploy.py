"""Write the ARM templates in deploy/sentinel from schemas/asim.schema.json, so that the DCR's stream
declaration (and the custom table) list exactly the columns and types the asim rows may carry.

- ``dcr-asim.json``: a ``kind: Direct`` DCR whose stream ``Custom-NsgFlowAsim`` goes unchanged
  (``transformKql: source``) to ``Microsoft-ASimNetworkSessionLogs``, and the Monitoring Metrics
  Publisher role on it for the identity that runs the forwarder.
- ``dcr-custom-table.json``: the same, into a custom table ``NsgFlows_CL`` with the same columns, which
  the template creates.

Run `make schemas` after the schema changes (tests/test_sentinel_deploy.py checks the files are current).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "schemas" / "asim.schema.json"
DEPLOY = ROOT / "deploy" / "sentinel"

STREAM = "Custom-NsgFlowAsim"
CUSTOM_TABLE = "NsgFlows_CL"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
DCR_API = "2023-03-11"
# Log Analytics column types as a DCR stream declaration and the Tables API spell them.
STREAM_TYPES = {"bool": "boolean"}
TABLE_TYPES = {"bool": "boolean", "datetime": "dateTime"}


def columns(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, table type) of every column, TimeGenerated first."""
    out = [(name, prop["x-column-type"]) for name, prop in schema["properties"].items()]
    return sorted(out, key=lambda c: (c[0] != "TimeGenerated", c[0]))


def _parameters(custom: bool) -> dict[str, Any]:
    return {
        "workspaceName": {
            "type": "string",
            "metadata": {"description": "The Log Analytics workspace of Microsoft Sentinel, in this resource group."},
        },
        "dataCollectionRuleName": {
            "type": "string",
            "defaultValue": "nsg-forwarder-custom" if custom else "nsg-forwarder-asim",
            "metadata": {"description": "Name of the data collection rule to create."},
        },
        "location": {
            "type": "string",
            "defaultValue": "[resourceGroup().location]",
            "metadata": {"description": "Region of the DCR: the workspace's region."},
        },
        "principalId": {
            "type": "string",
            "metadata": {
                "description": "Object (principal) id of the identity nsg-forwarder runs as: a managed identity's "
                "principalId or an app registration's service principal. It gets Monitoring Metrics Publisher "
                "on the DCR."
            },
        },
        "principalType": {
            "type": "string",
            "defaultValue": "ServicePrincipal",
            "allowedValues": ["ServicePrincipal", "User", "Group"],
            "metadata": {"description": "ServicePrincipal for managed identities and app registrations."},
        },
    }


def template(schema: dict[str, Any], custom: bool) -> dict[str, Any]:
    cols = columns(schema)
    workspace = "[resourceId('Microsoft.OperationalInsights/workspaces', parameters('workspaceName'))]"
    dcr_id = "[resourceId('Microsoft.Insights/dataCollectionRules', parameters('dataCollectionRuleName'))]"
    output = f"Custom-{CUSTOM_TABLE}" if custom else "Microsoft-ASimNetworkSessionLogs"
    resources: list[dict[str, Any]] = []
    dcr_depends: list[str] = []
    if custom:
        table = f"[concat(parameters('workspaceName'), '/{CUSTOM_TABLE}')]"
        resources.append(
            {
                "type": "Microsoft.OperationalInsights/workspaces/tables",
                "apiVersion": "2022-10-01",
                "name": table,
                "properties": {
                    "plan": "Analytics",
                    "schema": {
                        "name": CUSTOM_TABLE,
                        "description": "Azure NSG and VNet flow tuples as ASIM Network Session rows (nsg-forwarder).",
                        "columns": [{"name": n, "type": TABLE_TYPES.get(t, t)} for n, t in cols],
                    },
                },
            }
        )
        dcr_depends.append(
            f"[resourceId('Microsoft.OperationalInsights/workspaces/tables', parameters('workspaceName'), "
            f"'{CUSTOM_TABLE}')]"
        )
    resources.append(
        {
            "type": "Microsoft.Insights/dataCollectionRules",
            "apiVersion": DCR_API,
            "name": "[parameters('dataCollectionRuleName')]",
            "location": "[parameters('location')]",
            "kind": "Direct",
            "dependsOn": dcr_depends,
            "properties": {
                "description": "nsg-forwarder: Azure NSG / VNet flow tuples as ASIM Network Session rows.",
                "streamDeclarations": {
                    STREAM: {"columns": [{"name": n, "type": STREAM_TYPES.get(t, t)} for n, t in cols]}
                },
                "destinations": {"logAnalytics": [{"workspaceResourceId": workspace, "name": "sentinel"}]},
                "dataFlows": [
                    {
                        "streams": [STREAM],
                        "destinations": ["sentinel"],
                        "transformKql": "source",
                        "outputStream": output,
                    }
                ],
            },
        }
    )
    resources.append(
        {
            "type": "Microsoft.Authorization/roleAssignments",
            "apiVersion": "2022-04-01",
            "name": f"[guid({dcr_id[1:-1]}, parameters('principalId'), '{MONITORING_METRICS_PUBLISHER}')]",
            "scope": dcr_id,
            "dependsOn": [dcr_id],
            "properties": {
                "roleDefinitionId": "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
                f"'{MONITORING_METRICS_PUBLISHER}')]",
                "principalId": "[parameters('principalId')]",
                "principalType": "[parameters('principalType')]",
                "description": "Monitoring Metrics Publisher: lets nsg-forwarder send rows to this DCR.",
            },
        }
    )
    reference = f"reference({dcr_id[1:-1]}, '{DCR_API}')"
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "metadata": {
            "description": f"Generated by tools/build_sentinel_deploy.py from schemas/asim.schema.json: a kind "
            f"Direct DCR whose stream {STREAM} feeds {output}"
            + (" (created here with the same columns as ASimNetworkSessionLogs)" if custom else "")
            + ", and the Monitoring Metrics Publisher role on it for the forwarder's identity."
        },
        "parameters": _parameters(custom),
        "resources": resources,
        "outputs": {
            "endpoint": {"type": "string", "value": f"[{reference}.endpoints.logsIngestion]"},
            "dcr_immutable_id": {"type": "string", "value": f"[{reference}.immutableId]"},
            "stream": {"type": "string", "value": STREAM},
        },
    }


def render(schema: dict[str, Any]) -> dict[str, str]:
    """File name -> text of every generated file."""
    return {
        "dcr-asim.json": json.dumps(template(schema, custom=False), indent=2) + "\n",
        "dcr-custom-table.json": json.dumps(template(schema, custom=True), indent=2) + "\n",
    }


if __name__ == "__main__":
    files = render(json.loads(SCHEMA.read_text()))
    if "--check" in sys.argv:
        sys.exit(0 if all((DEPLOY / n).exists() and (DEPLOY / n).read_text() == t for n, t in files.items()) else 1)
    DEPLOY.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (DEPLOY / name).write_text(text)
        print(f"wrote {DEPLOY / name}")
