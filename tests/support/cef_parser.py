"""A strict CEF parser for tests: accepts only what the ArcSight CEF specification allows.

Rejects (with ``CefError``): a line not starting with ``CEF:``, raw CR or LF anywhere, fewer than
eight ``|``-separated header fields, an unescaped ``|`` or a backslash escape other than ``\\|`` and
``\\\\`` in a header field, an empty header field other than the name, an extension key that is not
alphanumeric (underscore allowed), a duplicate key, an unescaped ``=`` inside a value, and any
backslash escape in a value other than ``\\\\``, ``\\=``, ``\\n`` and ``\\r``.

Extension values may contain spaces: a value runs up to the last space before the next unescaped
``=``, which is unambiguous exactly because ``=`` in values must be escaped.
"""

from __future__ import annotations

import re
from typing import Any

HEADER_FIELDS = ("device_vendor", "device_product", "device_version", "signature_id", "name", "severity")
_KEY = re.compile(r"[A-Za-z0-9_]+")
_HEADER_ESCAPES = {"|": "|", "\\": "\\"}
_VALUE_ESCAPES = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}


class CefError(ValueError):
    """The line is not valid CEF."""


def parse_cef(line: str) -> dict[str, Any]:
    """``{"version": 0, "device_vendor": ..., ..., "severity": ..., "extension": {key: value}}``, unescaped."""
    if not line.startswith("CEF:"):
        raise CefError("a CEF line starts with 'CEF:'")
    if "\n" in line or "\r" in line:
        raise CefError("raw CR or LF in a CEF line (multi-line values must be escaped as \\n / \\r)")
    fields, rest = _header(line[4:])
    version_text = fields[0]
    if not version_text.isdigit() or version_text not in ("0", "1"):
        raise CefError(f"unsupported CEF version {version_text!r}")
    out: dict[str, Any] = {"version": int(version_text)}
    for name, value in zip(HEADER_FIELDS, fields[1:], strict=True):
        if not value and name != "name":
            raise CefError(f"empty header field {name}")
        out[name] = value
    out["extension"] = _extension(rest)
    return out


def _header(text: str) -> tuple[list[str], str]:
    """The seven header fields after 'CEF:' (version first), unescaped, and the raw extension."""
    fields, end = _split(text, "|", _HEADER_ESCAPES, "header", 4, limit=7)
    if len(fields) < 7:
        raise CefError(f"header has {len(fields)} '|'-terminated fields after 'CEF:', expected 7")
    return [_unescape(field, _HEADER_ESCAPES) for field in fields], text[end:]


def _split(
    text: str, sep: str, escapes: dict[str, str], where: str, offset: int = 0, limit: int = -1
) -> tuple[list[list[str]], int]:
    """``text`` cut at each unescaped ``sep`` (at most ``limit`` times), and where the scan stopped.

    A segment is a list of characters with every escape kept as one marked item (NUL and the
    escaped character), so that a separator or space produced by unescaping is never taken for
    syntax. Without a limit the text after the last separator is the last segment; with one, the
    scan stops at the limit and the caller takes the rest.
    """
    segments: list[list[str]] = []
    current: list[str] = []
    i = 0
    n = len(text)
    while i < n and len(segments) != limit:
        c = text[i]
        if c == "\\":
            nxt = text[i + 1] if i + 1 < n else ""
            if nxt not in escapes:
                allowed = " ".join("\\" + e for e in escapes)
                raise CefError(f"bad escape \\{nxt} in {where} at column {i + offset}: only {allowed} allowed")
            current.append("\0" + nxt)
            i += 2
        elif c == sep:
            segments.append(current)
            current = []
            i += 1
        else:
            current.append(c)
            i += 1
    if limit < 0:
        segments.append(current)
    return segments, i


def _extension(text: str) -> dict[str, str]:
    if not text:
        return {}
    # segments[k] is the text between unescaped '=' signs.
    segments, _ = _split(text, "=", _VALUE_ESCAPES, "extension")
    if len(segments) < 2:
        raise CefError("extension has no key=value pair")
    tokens = segments
    first_key = _raw(tokens[0])
    if not _KEY.fullmatch(first_key):
        raise CefError(f"bad extension key {first_key!r}")
    out: dict[str, str] = {}
    key = first_key
    for k, seg in enumerate(tokens[1:], 1):
        last = k == len(tokens) - 1
        if last:
            value_part, next_key = seg, None
        else:
            cut = _last_space(seg)
            if cut is None:
                raise CefError(f"unescaped '=' in the value of {key!r}")
            value_part, next_key = seg[:cut], _raw(seg[cut + 1 :])
            if not _KEY.fullmatch(next_key):
                raise CefError(f"unescaped '=' in the value of {key!r} (or bad key {next_key!r})")
        if key in out:
            raise CefError(f"duplicate extension key {key!r}")
        out[key] = _unescape(value_part, _VALUE_ESCAPES)
        if next_key is not None:
            key = next_key
    return out


def _last_space(seg: list[str]) -> int | None:
    for j in range(len(seg) - 1, -1, -1):
        if seg[j] == " ":
            return j
    return None


def _raw(seg: list[str]) -> str:
    if any(len(c) > 1 for c in seg):
        raise CefError("escape sequence inside an extension key")
    return "".join(seg)


def _unescape(seg: list[str], escapes: dict[str, str]) -> str:
    return "".join(escapes[c[1]] if len(c) > 1 else c for c in seg)
