"""The config contract: the shipped examples validate, the schema is current, secrets stay out of output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from forwarder.config.loader import ConfigError, load_config, world_readable_secret

REPO = Path(__file__).resolve().parents[1]
ENV = {"AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true", "HEC_TOKEN": "t", "ES_API_KEY": "k"}


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_example_validates(example: Path) -> None:
    cfg = load_config(example, env=ENV)
    assert cfg["sink"]


def test_the_config_schema_is_built_from_the_current_fragments() -> None:
    done = subprocess.run([sys.executable, str(REPO / "tools" / "build_config_schema.py"), "--check"])
    assert done.returncode == 0, "schemas/config.schema.json is stale: run `make schemas`"


def test_secret_files_are_read_and_both_forms_at_once_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "hec-token"
    secret.write_text("s3cr3t-token\n")
    body = f"""
[source]
type = "directory"
path = "x"
[[sink]]
type = "splunk_hec"
url = "https://splunk.example.net:8088"
token_file = "{secret}"
"""
    path = tmp_path / "c.toml"
    path.write_text(body)
    cfg = load_config(path, env={})
    assert cfg["sink"][0]["token"] == "s3cr3t-token"
    path.write_text(body + 'token = "other"\n')
    with pytest.raises(ConfigError, match=r"sink\[0\].token_file: give either token or token_file"):
        load_config(path, env={})


def test_cef_into_elasticsearch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[source]\ntype = "directory"\npath = "x"\n[[sink]]\ntype = "elasticsearch"\nformat = "cef"\n'
        'url = "https://es:9200"\napi_key = "k"\n'
    )
    with pytest.raises(ConfigError, match=r"sink\[0\]"):
        load_config(path, env={})


def test_a_readable_config_holding_a_literal_secret_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[sink]]\ntype = "splunk_hec"\ntoken = "abc"\n')
    path.chmod(0o644)
    assert world_readable_secret(path, {})
    path.write_text('[[sink]]\ntype = "splunk_hec"\ntoken = "${HEC_TOKEN}"\n')
    assert not world_readable_secret(path, {})
    path.write_text('[[sink]]\ntype = "splunk_hec"\ntoken = "abc"\n')
    path.chmod(0o600)
    assert not world_readable_secret(path, {})
