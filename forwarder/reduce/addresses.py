"""Address sets for filters: CIDR ranges, single addresses, and named lists (``private``, ``public``, ...).

A set is kept as sorted, merged integer ranges per address family, so a lookup is one bisect whatever
the number of ranges, and ``public`` (everything that is not special) is the complement of the others.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Iterable, Mapping

Range = tuple[int, int]  # inclusive [first, last] address as integers

# Built-in lists, by the RFCs that define them.
_NAMED: dict[str, tuple[str, ...]] = {
    "private": ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"),  # RFC 1918, RFC 4193
    "loopback": ("127.0.0.0/8", "::1/128"),
    "link_local": ("169.254.0.0/16", "fe80::/10"),
    "multicast": ("224.0.0.0/4", "ff00::/8"),
    "cgnat": ("100.64.0.0/10",),  # RFC 6598 shared address space
    # Azure's platform addresses: the wire server / DNS and the instance metadata service.
    "azure_platform": ("168.63.129.16/32", "169.254.169.254/32"),
}
# Not public: the lists above and the unspecified, documentation, benchmarking and reserved blocks.
_NOT_PUBLIC = (
    *_NAMED["private"], *_NAMED["loopback"], *_NAMED["link_local"], *_NAMED["multicast"], *_NAMED["cgnat"],
    "0.0.0.0/8", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "240.0.0.0/4", "::/128", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001:db8::/32",
)  # fmt: skip
NAMED_LISTS = (*_NAMED, "public")

_V4_MAX = (1 << 32) - 1
_V6_MAX = (1 << 128) - 1


class AddressListError(ValueError):
    """An entry that is neither an address, a CIDR range nor a known list name."""


def _merge(ranges: Iterable[Range]) -> list[Range]:
    out: list[Range] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            if last > out[-1][1]:
                out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return out


def _complement(ranges: list[Range], top: int) -> list[Range]:
    out: list[Range] = []
    nxt = 0
    for first, last in ranges:
        if first > nxt:
            out.append((nxt, first - 1))
        nxt = last + 1
    if nxt <= top:
        out.append((nxt, top))
    return out


class AddressSet:
    """Addresses in any of the given entries. Entries: "10.0.0.0/8", "2001:db8::1", or a list name."""

    def __init__(self, entries: Iterable[str], lists: Mapping[str, Iterable[str]] | None = None):
        v4: list[Range] = []
        v6: list[Range] = []
        for entry in entries:
            self._add(entry, v4, v6, lists or {}, depth=0)
        self.v4 = _merge(v4)
        self.v6 = _merge(v6)
        self._v4_starts = [r[0] for r in self.v4]
        self._v6_starts = [r[0] for r in self.v6]

    def _add(
        self, entry: str, v4: list[Range], v6: list[Range], lists: Mapping[str, Iterable[str]], depth: int
    ) -> None:
        name = entry.strip()
        if name == "public":
            not_public = AddressSet(_NOT_PUBLIC)
            v4.extend(_complement(not_public.v4, _V4_MAX))
            v6.extend(_complement(not_public.v6, _V6_MAX))
            return
        if name in _NAMED or name in lists:
            if depth > 4:
                raise AddressListError(f"{name!r}: address lists refer to each other too deeply")
            for inner in _NAMED.get(name) or lists[name]:
                self._add(inner, v4, v6, lists, depth + 1)
            return
        try:
            net = ipaddress.ip_network(name, strict=False)
        except ValueError:
            known = ", ".join([*NAMED_LISTS, *lists])
            raise AddressListError(
                f"{entry!r} is not an address, a CIDR range (10.0.0.0/8, 2001:db8::/32) nor a list name ({known})"
            ) from None
        target = v4 if net.version == 4 else v6
        target.append((int(net.network_address), int(net.broadcast_address)))

    def __contains__(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        value = int(ip)
        ranges, starts = (self.v4, self._v4_starts) if ip.version == 4 else (self.v6, self._v6_starts)
        i = bisect_right(starts, value) - 1
        return i >= 0 and value <= ranges[i][1]
