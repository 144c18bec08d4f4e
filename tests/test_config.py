"""The config contract: the shipped examples validate, the schema is current, secrets stay out of output."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from forwarder.config.loader import ConfigError, load_config, world_readable_secret
from forwarder.reduce.config import reductions

REPO = Path(__file__).resolve().parents[1]
ENV = {
    "AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
    "HEC_TOKEN": "t",
    "HEC_URL": "https://splunk.example.net:8088",
    "ES_API_KEY": "k",
}


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_example_validates(example: Path) -> None:
    cfg = load_config(example, env=ENV)
    assert cfg["sink"]
    reductions(cfg)  # filters and aggregation compile (address lists, ports, windows)


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


def _load(tmp_path: Path, body: str) -> dict[str, object]:
    path = tmp_path / "c.toml"
    path.write_text('[source]\ntype = "directory"\npath = "logs"\n' + body)
    return load_config(path, env={})


@pytest.mark.parametrize(
    "sink,key,says",
    [
        ('type = "http"\nurl = "ftp://collector:21/x"', "sink[0].url", "expected an http(s)://host[:port]"),
        ('type = "elasticsearch"\nurl = "es.example.net:9200"', "sink[0].url", "such as https://es.example.net:9200"),
        ('type = "splunk_hec"\nurl = "https://splunk:8088"\ntoken = "t"\nchannel = "x"', "sink[0].channel", "a GUID"),
        ('type = "file"\npath = "o"\nrotate_interval = "1 hour"', "sink[0].rotate_interval", '"15m", "1h", "1d"'),
        ('type = "file"\npath = "o"\nrotate_bytes = "lots"', "sink[0].rotate_bytes", '"100MiB"'),
        ('type = "file"\npath = "o.ndjson.gz"', "sink[0].path", "not ending in .gz"),
        ('type = "syslog"\nhost = "h"\nseverity_denied = "loud"', "sink[0].severity_denied", "a severity name"),
    ],
)
def test_a_value_of_the_wrong_form_is_answered_with_the_forms_accepted(
    tmp_path: Path, sink: str, key: str, says: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, f"[[sink]]\n{sink}\n")
    message = str(err.value)
    assert f"{key}: expected " in message and says in message, message
    assert "does not match" not in message and "not valid under any" not in message and "^" not in message


def test_a_url_with_a_password_is_refused_without_repeating_the_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, '[[sink]]\ntype = "http"\nurl = "https://ingest:hunter2@collector.example.net/x"\n')
    message = str(err.value)
    assert "sink[0].url" in message and "without user:password@" in message
    assert "hunter2" not in message and "https://<user:password>@collector.example.net/x" in message


def test_the_syslog_severities_validate_by_name_and_number(tmp_path: Path) -> None:
    cfg = _load(tmp_path, '[[sink]]\ntype = "syslog"\nhost = "h"\nseverity_allowed = "info"\nseverity_denied = 4\n')
    assert cfg["sink"] == [{"type": "syslog", "host": "h", "severity_allowed": "info", "severity_denied": 4}]


@pytest.mark.parametrize(
    "listen,says",
    [("nonsense", "expected host:port such as 127.0.0.1:9108"), ("127.0.0.1:99999", "between 1 and 65535")],
)
def test_a_metrics_address_that_cannot_be_bound_is_a_config_error(tmp_path: Path, listen: str, says: str) -> None:
    with pytest.raises(ConfigError, match=rf"metrics\.listen: .*{says}"):
        _load(tmp_path, f'[metrics]\nlisten = "{listen}"\n[[sink]]\ntype = "file"\npath = "o"\n')
    for good in ("127.0.0.1:9108", "0.0.0.0:9108", ":9108", "[::1]:9108", ""):
        assert _load(tmp_path, f'[metrics]\nlisten = "{good}"\n[[sink]]\ntype = "file"\npath = "o"\n')


@pytest.mark.parametrize("start", ['"2026-11-25T10:00:00"', "2026-11-25T10:00:00", '"2026-11-25"', "2026-11-25"])
def test_a_start_time_without_utc_offset_is_refused_rather_than_guessed(tmp_path: Path, start: str) -> None:
    with pytest.raises(ConfigError, match=r"source\.start: '2026-11-25(T10:00:00)?' has no UTC offset.*Z for UTC"):
        _load(tmp_path, f'start = {start}\n[[sink]]\ntype = "file"\npath = "o"\n')


@pytest.mark.parametrize("start", ['"2026-11-25T10:00:00Z"', '"2026-11-25T11:00:00+01:00"', "2026-11-25T10:00:00Z"])
def test_an_rfc_3339_start_with_offset_is_taken(tmp_path: Path, start: str) -> None:
    from forwarder.sources.start import parse_start

    cfg = _load(tmp_path, f'start = {start}\n[[sink]]\ntype = "file"\npath = "o"\n')
    source = cfg["source"]
    assert isinstance(source, dict)
    assert parse_start(source["start"]) == datetime(2026, 11, 25, 10, tzinfo=UTC)


def test_two_writers_on_one_file_are_refused_naming_both_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sink\[1\].path: .*/o is also sink\[0\].path"):
        _load(tmp_path, '[[sink]]\ntype = "file"\npath = "o"\n[[sink]]\ntype = "file"\npath = "./o"\n')
    with pytest.raises(ConfigError, match=r"sink\[0\].path: .*cp.json is also checkpoint.path"):
        _load(tmp_path, '[checkpoint]\npath = "cp.json"\n[[sink]]\ntype = "file"\npath = "cp.json"\n')
    with pytest.raises(ConfigError, match=r"sink\[0\].path: .*dead-letter.ndjson is also the dead-letter file"):
        _load(tmp_path, '[checkpoint]\npath = "s/cp.json"\n[[sink]]\ntype = "file"\npath = "s/dead-letter.ndjson"\n')


def test_relative_paths_are_relative_to_the_config_file_not_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hec-token").write_text("t0ken\n")
    path = tmp_path / "etc" / "c.toml"
    path.write_text(
        '[source]\ntype = "directory"\npath = "../logs"\n[checkpoint]\npath = "state/cp.json"\n'
        '[[sink]]\ntype = "file"\npath = "-"\n'
        '[[sink]]\ntype = "splunk_hec"\nurl = "https://splunk:8088"\ntoken_file = "hec-token"\n'
        '[[sink]]\ntype = "syslog"\nhost = "h"\nprotocol = "tls"\ntls_ca_file = "ca.pem"\n'
    )
    monkeypatch.chdir("/")
    cfg = load_config(path, env={})
    monkeypatch.chdir(tmp_path)
    again = load_config(Path("etc/c.toml"), env={})
    assert cfg == again
    assert cfg["source"]["path"] == str(tmp_path / "logs")
    assert cfg["checkpoint"]["path"] == str(tmp_path / "etc" / "state" / "cp.json")
    assert cfg["sink"][0]["path"] == "-"  # stdout stays stdout
    assert cfg["sink"][1]["token"] == "t0ken"
    assert cfg["sink"][2]["tls_ca_file"] == str(tmp_path / "etc" / "ca.pem")


def test_a_config_that_is_not_utf8_is_a_config_error_naming_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b'[source]\ntype = "directory"\npath = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=rf"{path}: not UTF-8 text \(byte 0xe9 on line 3\)"):
        load_config(path, env={})
