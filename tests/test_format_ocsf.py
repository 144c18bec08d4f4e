"""OCSF output: golden files, the mapping of every attribute, JSON escaping, and the project's schema
checked against the upstream OCSF 1.8.0 definitions vendored in tests/reference/ocsf."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from forwarder.flowlog.community_id import community_id
from forwarder.formats import formatter
from tests.support.events import SCHEMAS, validate_lines
from tests.support.formats import (
    GOLDEN_CASES,
    check_formatter_contract,
    check_golden_output,
    format_every_way,
    format_one,
    interleaved_context_events,
    make_context,
    make_event,
    partial_counter_events,
    sample_events,
)
from tests.support.reference import reference

# The upstream definitions, vendored in tests/reference (see its README).
REFERENCE = reference("ocsf")


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_output(case: str) -> None:
    check_golden_output("ocsf", case)


def test_every_attribute_maps_from_its_flow_tuple() -> None:
    events = sample_events()
    docs = validate_lines("ocsf", formatter("ocsf").format_many(events))
    activities = set()
    for event, doc in zip(events, docs, strict=True):
        ctx = event.ctx
        expected_activity = 5 if not event.allowed else {"B": 1, "C": 6, "E": 2, "": 6}[event.state]
        assert doc["activity_id"] == expected_activity
        activities.add(expected_activity)
        assert doc["type_uid"] == doc["class_uid"] * 100 + doc["activity_id"]
        assert (doc["action_id"], doc["disposition_id"]) == ((1, 1) if event.allowed else (2, 2))
        assert doc["severity_id"] == (1 if event.allowed else 2)
        assert doc["time"] == event.timestamp_ms
        assert doc["metadata"]["uid"] == event.event_id
        assert doc["metadata"]["log_version"] == str(ctx.version)
        assert doc["src_endpoint"]["ip"] == event.src_ip and doc["src_endpoint"]["port"] == event.src_port
        assert doc["dst_endpoint"]["ip"] == event.dst_ip and doc["dst_endpoint"]["port"] == event.dst_port
        nic, other = ("dst_endpoint", "src_endpoint") if event.inbound else ("src_endpoint", "dst_endpoint")
        assert doc[nic]["mac"] == ctx.mac.replace("-", ":") and "mac" not in doc[other]
        assert doc["observation_point"] == ("Destination" if event.inbound else "Source")
        conn = doc["connection_info"]
        assert conn["direction_id"] == (1 if event.inbound else 2)
        assert conn["protocol_num"] == event.protocol
        assert conn["protocol_name"] == {6: "tcp", 17: "udp", 1: "icmp"}[event.protocol]
        assert conn["protocol_ver_id"] == (6 if ":" in event.src_ip else 4)
        assert conn["community_uid"] == community_id(
            event.src_ip, event.dst_ip, event.src_port, event.dst_port, event.protocol
        )
        if event.bytes_s2d is None:
            assert "traffic" not in doc
        else:
            traffic = doc["traffic"]
            # OCSF's *_out is what the source (the flow's initiator) sent.
            assert (traffic["bytes_out"], traffic["packets_out"]) == (event.bytes_s2d, event.packets_s2d)
            assert (traffic["bytes_in"], traffic["packets_in"]) == (event.bytes_d2s, event.packets_d2s)
            assert traffic["bytes"] == traffic["bytes_in"] + traffic["bytes_out"]
            assert traffic["packets"] == traffic["packets_in"] + traffic["packets_out"]
        assert doc["firewall_rule"]["name"] == ctx.rule
        assert doc["cloud"]["account"]["uid"] == ctx.subscription_id
        assert doc["cloud"].get("region") == ("eastus" if ctx.kind == "vnet" else None)
        unmapped = doc["unmapped"]
        assert unmapped["resource_id"] == ctx.resource_id and unmapped["resource_group"] == ctx.resource_group
        assert unmapped.get("encryption") == (event.encryption or None)
    assert activities == {1, 2, 5, 6}


@pytest.mark.parametrize(
    "nasty", ['quote " and \\ backslash', "new\nline\r\ttab", "control \x00\x1f\x7f", "ünïcödé ✓ \u2028", '{"}]']
)
def test_context_strings_survive_json_escaping(nasty: str) -> None:
    ctx = make_context(kind="vnet", version=4, rule=nasty, name=nasty, resource_group=nasty, resource_id=nasty,
                       subscription_id=nasty, category=nasty, acl_id=nasty, target_resource_id=nasty)  # fmt: skip
    line, doc = format_one("ocsf", ctx, encryption=nasty)
    assert line.isascii()
    assert doc["firewall_rule"]["name"] == doc["cloud"]["account"]["uid"] == doc["metadata"]["log_name"] == nasty
    unmapped = doc["unmapped"]
    assert {unmapped[k] for k in ("resource_id", "resource_group", "flow_log", "acl_id", "encryption")} == {nasty}


def test_undecodable_bytes_in_context_stay_valid_json() -> None:
    _, doc = format_one("ocsf", make_context(rule="bad\udcffbyte"))
    assert doc["firewall_rule"]["name"] == "bad\udcffbyte"


def test_partial_and_missing_counters() -> None:
    docs = validate_lines("ocsf", formatter("ocsf").format_many(partial_counter_events()))
    assert "traffic" not in docs[0]
    assert docs[1]["traffic"] == {"packets_out": 7, "bytes_in": 99}
    counters = ("bytes_out", "packets_out", "bytes_in", "packets_in", "bytes", "packets")
    assert docs[2]["traffic"] == dict.fromkeys(counters, 0)


def test_nsg_v1_without_state_and_denied_flows() -> None:
    ctx = make_context(version=1)
    no_counters: dict[str, object] = dict.fromkeys(("packets_s2d", "bytes_s2d", "packets_d2s", "bytes_d2s"))
    events = [
        make_event(ctx, 0, state="", **no_counters),
        make_event(ctx, 1, state="", allowed=False, inbound=True, **no_counters),
    ]
    docs = validate_lines("ocsf", formatter("ocsf").format_many(events))
    assert [(d["activity_name"], d["action"], d["disposition"], d["status"]) for d in docs] == [
        ("Traffic", "Allowed", "Allowed", "Success"),
        ("Refuse", "Denied", "Blocked", "Failure"),
    ]
    assert "flow_state" not in docs[0]["unmapped"]


def test_contexts_interleaved_or_rebuilt_give_the_same_lines() -> None:
    events = interleaved_context_events()
    for event, doc in zip(events, validate_lines("ocsf", format_every_way("ocsf", events)), strict=True):
        assert doc["firewall_rule"]["name"] == event.ctx.rule
        assert doc["cloud"]["account"]["uid"] == event.ctx.subscription_id
        assert ("mac" in doc["src_endpoint"] or "mac" in doc["dst_endpoint"]) == bool(event.ctx.mac)


def test_other_protocols_and_empty_context_fields() -> None:
    ctx = make_context(rule="", subscription_id="", mac="", category="")
    events = [make_event(ctx, 0, protocol=47, src_port=0, dst_port=0), make_event(ctx, 1, protocol=200)]
    docs = validate_lines("ocsf", formatter("ocsf").format_many(events))
    assert docs[0]["connection_info"]["protocol_name"] == "gre"
    assert "protocol_name" not in docs[1]["connection_info"] and docs[1]["connection_info"]["protocol_num"] == 200
    assert "firewall_rule" not in docs[0] and "account" not in docs[0]["cloud"]


def test_formatter_contract() -> None:
    check_formatter_contract("ocsf", "application/json")


def test_schema_rejects_inconsistent_events() -> None:
    line, good = format_one("ocsf", make_context())
    mutations = [
        ("activity_name", "Close"),  # caption that does not belong to activity_id 6
        ("type_uid", 400101),  # type_uid must be class_uid * 100 + activity_id
        ("severity", "High"),
        ("class_uid", 4002),
        ("unexpected", 1),  # not an attribute of the class
    ]
    for key, value in mutations:
        bad = dict(good, **{key: value})
        with pytest.raises(AssertionError):
            validate_lines("ocsf", [json.dumps(bad)])
    bad = json.loads(line)
    bad["src_endpoint"]["mac"] = "not-a-mac"
    with pytest.raises(AssertionError):
        validate_lines("ocsf", [json.dumps(bad)])
    bad = json.loads(line)
    del bad["metadata"]["version"]
    with pytest.raises(AssertionError):
        validate_lines("ocsf", [json.dumps(bad)])


# ---- the project's schema against the upstream OCSF 1.8.0 definitions ----------------------------------

# Objects whose parent definitions are not part of the reference set: OCSF's _entity gives name and uid,
# and rule (parent of firewall_rule) extends _entity. Anything else must come from the reference files.
_BASE_OBJECT_ATTRIBUTES = {"_entity": {"name", "uid"}, "rule": {"name", "uid"}, "object": set()}


@cache
def _ref(relative: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REFERENCE / relative).read_text())
    return data


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / "ocsf.schema.json").read_text())
    return schema


def _class_attributes(profiles: set[str]) -> dict[str, dict[str, Any]]:
    """network_activity merged over network over base_event, with the attributes of the applied profiles."""
    merged: dict[str, dict[str, Any]] = {}
    for path in ("events/base_event.json", "events/network/network.json", "events/network/network_activity.json"):
        attrs = _ref(path)["attributes"]
        for include in attrs.get("$include", []):
            name = Path(include).stem
            if name in profiles:
                for key, value in _ref(include)["attributes"].items():
                    merged[key] = {**merged.get(key, {}), **value}
        for key, value in attrs.items():
            if key != "$include":
                merged[key] = {**merged.get(key, {}), **value}
    return merged


def _class_profiles() -> set[str]:
    names: set[str] = set()
    for path in ("events/base_event.json", "events/network/network.json"):
        names.update(_ref(path).get("profiles", []))
    return names


def _object_attributes(name: str) -> dict[str, dict[str, Any]]:
    if name in _BASE_OBJECT_ATTRIBUTES:
        return {a: {} for a in _BASE_OBJECT_ATTRIBUTES[name]}
    definition = _ref(f"objects/{name}.json")
    attrs = dict(_object_attributes(definition["extends"])) if definition.get("extends") else {}
    for key, value in definition["attributes"].items():
        if key != "$include":
            attrs[key] = {**attrs.get(key, {}), **value}
    return attrs


def _dictionary() -> dict[str, Any]:
    return _ref("dictionary.json")


_JSON_TYPES = {"integer_t": "integer", "long_t": "integer", "string_t": "string", "boolean_t": "boolean"}


def _schema_type(node: dict[str, Any]) -> str | None:
    if "type" in node:
        t: str = node["type"]
        return t
    values = [node["const"]] if "const" in node else node.get("enum")
    if values:
        kinds = {_json_kind(v) for v in values}
        assert len(kinds) == 1, f"mixed types in {node}"
        return kinds.pop()
    return None


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "other"


def _walk(node: dict[str, Any], owner: str, path: str) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(path, owner object or class, attribute, schema node) for every property the schema allows."""
    for attr, sub in node.get("properties", {}).items():
        yield f"{path}{attr}", owner, attr, sub
        dict_type = _dictionary()["attributes"].get(attr, {}).get("type", "")
        if sub.get("type") == "object" and dict_type not in ("object", ""):
            yield from _walk(sub, dict_type, f"{path}{attr}.")


def test_schema_is_draft_2020_12_and_closed() -> None:
    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    for path, _owner, attr, node in _walk(schema, "network_activity", ""):
        if node.get("type") == "object" and attr != "unmapped":
            assert node.get("additionalProperties") is False, f"{path} is open"


def test_every_schema_attribute_exists_in_ocsf_with_its_type() -> None:
    profiles = set(_schema()["properties"]["metadata"]["properties"]["profiles"]["const"])
    class_attrs = _class_attributes(profiles)
    dictionary = _dictionary()["attributes"]
    checked = 0
    for path, owner, attr, node in _walk(_schema(), "network_activity", ""):
        if path.startswith("unmapped."):
            continue  # free-form by definition (dictionary type "object")
        known = class_attrs if owner == "network_activity" else _object_attributes(owner)
        assert attr in known, f"{path}: no attribute {attr!r} in OCSF {owner}"
        entry = dictionary[attr]
        ocsf_type = entry["type"]
        # Named types resolve to a base type: hostname_t -> string_t.
        base_type = _dictionary()["types"]["attributes"].get(ocsf_type, {}).get("type", ocsf_type)
        expected = _JSON_TYPES.get(ocsf_type) or _JSON_TYPES.get(base_type, "object")
        if entry.get("is_array"):
            expected = "array"
        got = _schema_type(node)
        if ocsf_type == "object":  # OCSF's generic JSON object (unmapped)
            assert got == "object", path
        else:
            assert got == expected, f"{path}: schema type {got}, OCSF {ocsf_type}"
        checked += 1
    assert checked > 40


def test_required_attributes_of_class_and_objects_are_required() -> None:
    schema = _schema()
    profiles = set(schema["properties"]["metadata"]["properties"]["profiles"]["const"])
    assert profiles <= _class_profiles(), "metadata.profiles names a profile the class does not have"
    # Profiles not applied (osint, host, ...) add no requirements: OCSF requires a profile's attributes
    # only when the event lists it in metadata.profiles.
    assert "osint" not in profiles
    class_required = {k for k, v in _class_attributes(profiles).items() if v.get("requirement") == "required"}
    assert {"activity_id", "category_uid", "class_uid", "type_uid", "severity_id", "time", "metadata",
            "cloud"} <= class_required  # fmt: skip
    assert class_required <= set(schema["required"]), f"not required: {class_required - set(schema['required'])}"
    for path, _owner, attr, node in _walk(schema, "network_activity", ""):
        if node.get("type") != "object" or path.startswith("unmapped"):
            continue
        dict_type = _dictionary()["attributes"][attr]["type"]
        required = {k for k, v in _object_attributes(dict_type).items() if v.get("requirement") == "required"}
        assert required <= set(node.get("required", [])), f"{path} ({dict_type}) must require {required}"


def _sibling_pairs(node: dict[str, Any]) -> Iterator[tuple[str, str, dict[int, str | None]]]:
    """(id attribute, name attribute, {id: caption or None for free text}) from the schema's oneOf blocks."""
    blocks = [node, *node.get("allOf", [])]
    for block in blocks:
        options = block.get("oneOf")
        if not options:
            continue
        keys = list(options[0]["properties"])
        id_attr, name_attr = keys[0], keys[1]
        pairs: dict[int, str | None] = {}
        for option in options:
            props = option["properties"]
            pairs[props[id_attr]["const"]] = props[name_attr].get("const")
        yield id_attr, name_attr, pairs


def _reference_enum(owner: str, attr: str) -> dict[str, Any]:
    """The enum that applies to ``attr`` of ``owner`` (class definitions override the dictionary)."""
    if owner == "network_activity":
        profiles = set(_schema()["properties"]["metadata"]["properties"]["profiles"]["const"])
        merged = _class_attributes(profiles)
        enum: dict[str, Any] = {}
        for path in ("events/base_event.json", "events/network/network.json", "events/network/network_activity.json"):
            enum.update(_ref(path)["attributes"].get(attr, {}).get("enum", {}))
        if not enum:
            enum = merged.get(attr, {}).get("enum") or _dictionary()["attributes"][attr]["enum"]
        return enum
    found: dict[str, Any] = (
        _object_attributes(owner).get(attr, {}).get("enum") or _dictionary()["attributes"][attr]["enum"]
    )
    return found


def test_enum_values_and_captions_match_the_reference() -> None:
    schema = _schema()
    nodes = [("network_activity", schema)]
    for _path, _owner, attr, node in _walk(schema, "network_activity", ""):
        if node.get("type") == "object":
            nodes.append((_dictionary()["attributes"].get(attr, {}).get("type", ""), node))
    seen = set()
    for owner, node in nodes:
        for id_attr, name_attr, pairs in _sibling_pairs(node):
            enum = _reference_enum(owner, id_attr)
            live = {int(k): v["caption"] for k, v in enum.items() if "@deprecated" not in v}
            assert set(pairs) == set(live), f"{owner}.{id_attr}: values {sorted(pairs)} vs OCSF {sorted(live)}"
            for value, caption in pairs.items():
                assert caption == (None if value == 99 else live[value]), f"{owner}.{name_attr} for {value}"
            assert _dictionary()["attributes"][id_attr].get("sibling") == name_attr
            seen.add(id_attr)
    assert {"activity_id", "severity_id", "action_id", "disposition_id", "status_id", "direction_id",
            "protocol_ver_id", "observation_point_id", "type_id"} <= seen  # fmt: skip


def test_classification_constants_match_the_reference() -> None:
    schema = _schema()
    network = _ref("categories.json")["attributes"]["network"]
    activity_class = _ref("events/network/network_activity.json")
    assert schema["properties"]["category_uid"]["const"] == network["uid"] == 4
    assert schema["properties"]["category_name"]["const"] == network["caption"]
    assert schema["properties"]["class_uid"]["const"] == network["uid"] * 1000 + activity_class["uid"] == 4001
    assert schema["properties"]["class_name"]["const"] == activity_class["caption"]
    assert schema["properties"]["metadata"]["properties"]["version"]["const"] == _ref("version.json")["version"]
    (activity,) = [b for b in schema["allOf"] if "activity_id" in b["oneOf"][0]["properties"]]
    for option in activity["oneOf"]:
        props = option["properties"]
        assert props["type_uid"]["const"] == 4001 * 100 + props["activity_id"]["const"]
    types = _dictionary()["types"]["attributes"]
    endpoint = schema["properties"]["src_endpoint"]["properties"]
    assert endpoint["ip"]["pattern"] == types["ip_t"]["regex"]
    assert endpoint["mac"]["pattern"] == types["mac_t"]["regex"]
    assert [endpoint["port"]["minimum"], endpoint["port"]["maximum"]] == types["port_t"]["range"]
