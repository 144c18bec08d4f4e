"""Community ID v1 flow hashing (https://github.com/corelight/community-id-spec).

It is computed for every event of the ECS and OCSF formats, so the hot path is one dict lookup
for a flow seen before (a flow's B, C and E tuples share it) and one sha1 otherwise.
"""

from __future__ import annotations

import hashlib
import socket
import struct
from binascii import b2a_base64

_ICMP4 = 1
_ICMP6 = 58
# ICMP type -> the type of its reply, so that both directions of a one-to-one exchange hash alike.
_ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17, 10: 9, 9: 10}
_ICMP6_PAIRS = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130, 139: 140, 140: 139}
_PORTED = frozenset({6, 17, 132, _ICMP4, _ICMP6})
_PROTO = [bytes((p, 0)) for p in range(256)]
_PORTS = struct.Struct("!HH").pack
_sha1 = hashlib.sha1

_packed: dict[str, bytes] = {}
_cache: dict[tuple[str, str, int, int, int], str] = {}
_CACHE_MAX = 32_768  # flows seen within the last minutes; a bounded dict cleared when full


def _pack(addr: str) -> bytes:
    raw = socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)
    if len(_packed) >= _CACHE_MAX:
        _packed.clear()
    _packed[addr] = raw
    return raw


def community_id(src: str, dst: str, sport: int, dport: int, proto: int, seed: int = 0, b64: bool = True) -> str:
    """The ``1:...`` flow hash for a 5-tuple. For ICMP, sport/dport carry the ICMP type and code."""
    key = (src, dst, sport, dport, proto)
    if seed == 0 and b64:
        hit = _cache.get(key)
        if hit is not None:
            return hit
    a = _packed.get(src) or _pack(src)
    b = _packed.get(dst) or _pack(dst)
    one_way = False
    if proto in (1, 58):  # ICMP, ICMPv6 (literals: a constant tuple, no build per call)
        reply = (_ICMP4_PAIRS if proto == _ICMP4 else _ICMP6_PAIRS).get(sport)
        if reply is None:
            one_way = True  # no reply type: hashed as seen (type, code), never reordered
        else:
            dport = reply
    if not one_way and (a > b or (a == b and sport > dport)):
        a, b, sport, dport = b, a, dport, sport
    ports = _PORTS(sport, dport) if proto in _PORTED else b""
    digest = _sha1(seed.to_bytes(2, "big") + a + b + _PROTO[proto] + ports).digest()
    value = "1:" + (b2a_base64(digest, newline=False).decode() if b64 else digest.hex())
    if seed == 0 and b64:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[key] = value
    return value
