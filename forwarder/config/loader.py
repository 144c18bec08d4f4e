"""Load the TOML config: expand ${NAME}, read <secret>_file keys, validate against the schema.

Every error names the key (``sink[1].port``) so that a user can find it in the file.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from forwarder.config.checks import consistency
from forwarder.config.paths import resolve_relative

SECRET_KEYS = frozenset(
    {"connection_string", "account_key", "sas_token", "token", "api_key", "password", "client_secret"}
)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]*@")


class ConfigError(Exception):
    """The config cannot be used; the message says which file and key."""


def schema_path(name: str) -> Path:
    """Schemas ship inside the wheel (forwarder/schemas); in a source checkout they are at the top level."""
    packaged = Path(__file__).resolve().parents[1] / "schemas" / name
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parents[2] / "schemas" / name


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(schema_path("config.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def key_path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _expand(value: Any, where: list[str | int], env: Mapping[str, str], missing: dict[str, list[str]]) -> Any:
    """``value`` with every ${NAME} replaced; names not in ``env`` are collected in ``missing`` (name -> keys),
    so that one run of ``validate`` lists them all."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                missing.setdefault(name, []).append(key_path(where))
                return m.group(0)
            return env[name]

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, [*where, k], env, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, [*where, i], env, missing) for i, v in enumerate(value)]
    return value


def _missing_message(missing: dict[str, list[str]]) -> str:
    if len(missing) == 1:
        ((name, keys),) = missing.items()
        return f"environment variable {name} is not set (used by {', '.join(keys)})"
    listed = ", ".join(f"{name} (used by {', '.join(keys)})" for name, keys in sorted(missing.items()))
    return f"{len(missing)} environment variables are not set: {listed}"


def _read_secret_files(table: dict[str, Any], where: list[str | int]) -> None:
    for key in list(table):
        if key.endswith("_file") and key[: -len("_file")] in SECRET_KEYS:
            secret = key[: -len("_file")]
            if secret in table:
                raise ConfigError(f"{key_path([*where, key])}: give either {secret} or {key}, not both")
            path = Path(str(table.pop(key)))
            try:
                table[secret] = path.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{key_path([*where, key])}: cannot read {path}: {exc.strerror}") from exc
        elif isinstance(table[key], dict):
            _read_secret_files(table[key], [*where, key])
        elif isinstance(table[key], list):
            for i, item in enumerate(table[key]):
                if isinstance(item, dict):
                    _read_secret_files(item, [*where, key, i])


def _shown(value: Any) -> str:
    """A value as a message may show it: a URL's user:password@ is never repeated."""
    if isinstance(value, str):
        return repr(_USERINFO.sub(r"\1<user:password>@", value))
    return repr(value)


def _message(error: jsonschema.ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    expected = schema.get("x-expected")
    if error.validator == "not" and isinstance(error.validator_value, dict):
        expected = error.validator_value.get("x-expected", expected)
    where = error.absolute_path[-1] if error.absolute_path else ""
    if isinstance(where, str) and where in SECRET_KEYS:
        return f"not valid ({error.validator}); the value is a secret and not shown" + (
            f": expected {expected}" if expected else ""
        )
    if expected and error.validator in ("pattern", "oneOf", "anyOf", "not", "format", "type", "minLength"):
        return f"expected {expected}, got {_shown(error.instance)}"
    if error.validator == "additionalProperties":
        schema = error.schema if isinstance(error.schema, dict) else {}
        known = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known)) if isinstance(error.instance, dict) else []
        return f"unknown key {', '.join(repr(e) for e in extra)} (known keys: {', '.join(known)})"
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    if error.validator in ("enum", "const"):
        return f"{error.instance!r} is not allowed here (expected {error.message.split('is not one of ')[-1]})"
    if error.validator == "pattern":
        return f"{_shown(error.instance)} does not have the expected form ({error.validator_value})"
    return error.message


def validate(doc: dict[str, Any], origin: str) -> None:
    errors = sorted(_validator().iter_errors(doc), key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
    if errors:
        # The deepest error is the most specific one (an if/then branch reports on the key itself).
        best = max(errors, key=lambda e: len(e.absolute_path))
        raise ConfigError(f"{origin}: {key_path(best.absolute_path)}: {_message(best)}")


def read_text(path: Path) -> str:
    """The config file's text; ConfigError (naming the file) if it is missing, unreadable or not UTF-8."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"Config file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path} is a folder, not a config file") from exc
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); TOML files are UTF-8: "
            "save it as UTF-8 (iconv -f LATIN1 -t UTF-8, or your editor's encoding setting)"
        ) from None


def load_config(path: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The config at ``path``, validated, with ${VARS} expanded, secret files read, and relative paths made
    absolute against the file's own folder. Raises ConfigError naming the file and the key."""
    try:
        raw = tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    missing: dict[str, list[str]] = {}
    doc = _expand(raw, [], os.environ if env is None else env, missing)
    if missing:
        raise ConfigError(f"{path}: {_missing_message(missing)}")
    source = doc.get("source")
    if isinstance(source, dict) and isinstance(source.get("start"), datetime | date):
        # A TOML date-time value rather than a string: the same RFC 3339 rules apply (see checks).
        source["start"] = source["start"].isoformat()
    resolve_relative(doc, path.parent)
    _read_secret_files(doc, [])
    validate(doc, str(path))
    problems = consistency(doc)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    config: dict[str, Any] = doc
    return config


def world_readable_secret(path: Path, doc: Mapping[str, Any], raw_text: str | None = None) -> bool:
    """True when the file holds a secret literally (not via ${VAR} or *_file) and others may read it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    if not mode & (stat.S_IROTH | stat.S_IRGRP):
        return False
    try:
        raw = tomllib.loads(raw_text if raw_text is not None else read_text(path))
    except (tomllib.TOMLDecodeError, ConfigError):
        return False

    def literal(v: Any) -> bool:
        return isinstance(v, str) and bool(v) and not _VAR.fullmatch(v.strip())

    def literal_secret(value: Any) -> bool:
        if isinstance(value, dict):
            return any(
                (k in SECRET_KEYS and literal(v))
                # an http sink's headers usually carry an Authorization value
                or (k == "headers" and isinstance(v, dict) and any(literal(h) for h in v.values()))
                or literal_secret(v)
                for k, v in value.items()
            )
        if isinstance(value, list):
            return any(literal_secret(v) for v in value)
        return False

    return literal_secret(raw)
