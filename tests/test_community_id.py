"""Community ID v1: every published vector (TCP, UDP, SCTP, ICMP, ICMPv6, other protocols)."""

from __future__ import annotations

import json

import pytest

from forwarder.flowlog.community_id import community_id
from tests.support.reference import reference


def load(name: str) -> list[dict[str, object]]:
    return json.loads(reference(f"community-id/{name}.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "name,kwargs", [("baseline_deflt", {}), ("baseline_seed1", {"seed": 1}), ("baseline_nob64", {"b64": False})]
)
def test_every_reference_vector_matches(name: str, kwargs: dict[str, object]) -> None:
    vectors = load(name)
    assert len(vectors) > 20
    for v in vectors:
        sport, dport = int(v["sport"] or 0), int(v["dport"] or 0)  # type: ignore[call-overload]
        got = community_id(str(v["saddr"]), str(v["daddr"]), sport, dport, int(v["proto"]), **kwargs)  # type: ignore[arg-type, call-overload]
        assert got == v["communityid"], v


def test_both_directions_of_a_flow_hash_alike() -> None:
    a = community_id("10.0.0.4", "13.67.143.118", 44931, 443, 6)
    b = community_id("13.67.143.118", "10.0.0.4", 443, 44931, 6)
    assert a == b and a.startswith("1:")
    assert community_id("10.0.0.4", "13.67.143.118", 44931, 443, 17) != a
