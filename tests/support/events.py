"""Validate every event a test produces against the project's schema for its format."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@cache
def validator(fmt: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{fmt}.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def parse_line(fmt: str, line: str) -> dict[str, Any]:
    """One output line as a dict: JSON for ecs/ocsf, the strict CEF parser's result for cef."""
    if fmt == "cef":
        from tests.support.cef_parser import parse_cef

        return parse_cef(line)
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def validate_lines(fmt: str, lines: Iterable[str]) -> list[dict[str, Any]]:
    """Parse and schema-check every line; fail with the first error and its line number."""
    check = validator(fmt)
    out = []
    for n, line in enumerate(lines, 1):
        doc = parse_line(fmt, line)
        errors = sorted(check.iter_errors(doc), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            raise AssertionError(f"{fmt} event on line {n} fails its schema at {list(e.path)}: {e.message}\n{line}")
        out.append(doc)
    return out
