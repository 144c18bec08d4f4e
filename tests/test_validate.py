"""``nsg-forwarder validate``: what it can know on this machine, and with ``--connect``, every endpoint,
checked against the real parts (Azurite, rsyslog, the local HEC / Elasticsearch / NDJSON receivers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.azurite import Azurite, azurite  # noqa: F401 (fixture)
from tests.support.http_receivers import ElasticsearchReceiver, HecReceiver, NdjsonReceiver
from tests.support.net import free_port
from tests.support.rsyslog import Rsyslog, rsyslog, syslog_certs  # noqa: F401 (fixtures)

HEC_TOKEN = "00000000-1111-2222-3333-444444444444"
ES_KEY = "dGVzdC1rZXk6c2VjcmV0LXZhbHVl"
BEARER = "Bearer collector-s3cret-token"


def validate(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder", "validate", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def directory_source(tmp: Path, body: str) -> Path:
    (tmp / "logs").mkdir(exist_ok=True)
    path = tmp / "c.toml"
    path.write_text(f'[source]\ntype = "directory"\npath = "logs"\n{body}')
    path.chmod(0o600)
    return path


FILE_SINK = '[[sink]]\ntype = "file"\npath = "out/flows.ndjson"\n'


def test_a_usable_config_passes_and_validate_creates_nothing(tmp_path: Path) -> None:
    config = directory_source(tmp_path, '[checkpoint]\npath = "state/cp.json"\n' + FILE_SINK)
    done = validate(config)
    assert done.returncode == 0, done.stderr
    assert f"checkpoints: {tmp_path / 'state' / 'cp.json'}" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml", "logs"]  # no folder made, no file touched


@pytest.mark.parametrize(
    "body,says",
    [
        ('[source]\ntype = "directory"\npath = "nowhere"\n' + FILE_SINK, "source.path: {tmp}/nowhere does not exist"),
        (
            '[source]\ntype = "directory"\npath = "logs"\n[checkpoint]\npath = "a-file/state/cp.json"\n' + FILE_SINK,
            "checkpoint.path: cannot create the folder {tmp}/a-file/state: {tmp}/a-file is a file, not a folder",
        ),
        (
            '[source]\ntype = "directory"\npath = "logs"\n[[sink]]\ntype = "file"\npath = "a-file/flows.ndjson"\n',
            "sink[0].path: cannot create the folder {tmp}/a-file: {tmp}/a-file is a file, not a folder",
        ),
        (
            '[source]\ntype = "directory"\npath = "logs"\n[[sink]]\ntype = "file"\npath = "logs"\n',
            "sink[0].path: {tmp}/logs is a folder; name a file in it",
        ),
        (
            '[source]\ntype = "directory"\npath = "logs"\n[dead_letter]\npath = "a-file/dl.ndjson"\n' + FILE_SINK,
            "dead_letter.path: cannot create the folder {tmp}/a-file",
        ),
        (
            '[source]\ntype = "directory"\npath = "logs"\n'
            + FILE_SINK
            + '[[sink]]\ntype = "syslog"\nhost = "siem"\nprotocol = "tls"\ntls_ca_file = "ca.pem"\n',
            "sink[1].tls_ca_file: {tmp}/ca.pem does not exist",
        ),
        (
            '[source]\ntype = "directory"\npath = "logs"\n'
            + FILE_SINK
            + '[[sink]]\ntype = "file"\npath = "out/flows.ndjson"\n',
            "sink[1].path: {tmp}/out/flows.ndjson is also sink[0].path",
        ),
    ],
    ids=[
        "no-source-folder",
        "checkpoint-folder",
        "file-sink-folder",
        "file-sink-is-a-folder",
        "dead-letter",
        "tls-ca-file",
        "two-sinks-one-file",
    ],
)
def test_what_run_would_fail_on_later_is_refused_naming_the_key(tmp_path: Path, body: str, says: str) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    config = tmp_path / "c.toml"
    config.write_text(body)
    done = validate(config)
    assert done.returncode == 2, done.stdout
    assert says.format(tmp=tmp_path) in done.stderr
    assert "Traceback" not in done.stderr and "Config OK" not in done.stdout


# --- --connect -------------------------------------------------------------------------------------


def outcome_lines(out: str) -> dict[str, str]:
    """'sink hec (url)' -> 'ok: detail' / 'FAILED: detail' from validate --connect's report."""
    lines: dict[str, str] = {}
    for line in out.splitlines():
        status, _, rest = line.strip().partition("  ")
        if status in ("ok", "FAILED"):
            part, _, detail = rest.strip().partition(": ")
            lines[part.split(" (")[0]] = f"{status}: {detail}"
    return lines


@pytest.mark.azurite
@pytest.mark.rsyslog
def test_connect_reaches_storage_and_every_sink_and_sends_no_event(
    tmp_path: Path,
    azurite: Azurite,  # noqa: F811
    rsyslog: Rsyslog,  # noqa: F811
) -> None:
    container = azurite.new_container().container_name
    with (
        HecReceiver(HEC_TOKEN) as hec,
        ElasticsearchReceiver(api_key=ES_KEY) as es,
        NdjsonReceiver("/ingest", required_headers={"Authorization": BEARER}, status=200) as ndjson,
    ):
        config = tmp_path / "c.toml"
        config.write_text(
            f"""
[source]
type = "azure_blob"
connection_string = "${{AZURE_STORAGE_CONNECTION_STRING}}"
container = "{container}"
[checkpoint]
path = "state/cp.json"
{FILE_SINK}
[[sink]]
name = "siem-tcp"
type = "syslog"
host = "{rsyslog.host}"
port = {rsyslog.ports["tcp"]}
[[sink]]
name = "siem-tls"
type = "syslog"
host = "{rsyslog.host}"
port = {rsyslog.ports["tls"]}
protocol = "tls"
tls_ca_file = "{rsyslog.certs.ca}"
[[sink]]
name = "splunk"
type = "splunk_hec"
url = "{hec.url}"
token = "${{HEC_TOKEN}}"
[[sink]]
name = "elastic"
type = "elasticsearch"
url = "{es.url}"
api_key = "${{ES_API_KEY}}"
[[sink]]
name = "collector"
type = "http"
url = "{ndjson.url}/ingest"
headers = {{ Authorization = "${{COLLECTOR_AUTH}}" }}
"""
        )
        env = {
            "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
            "HEC_TOKEN": HEC_TOKEN,
            "ES_API_KEY": ES_KEY,
            "COLLECTOR_AUTH": BEARER,
        }
        done = validate(config, "--connect", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        seen = outcome_lines(done.stdout)
        assert seen[f"source {azurite.account_name}/{container}"].startswith("ok: the container")
        assert seen["sink file[0]"] == f"ok: can write {tmp_path / 'out' / 'flows.ndjson'}"
        assert seen["sink siem-tcp"].startswith("ok: connected to") and "over TCP" in seen["sink siem-tcp"]
        assert "certificate verified" in seen["sink siem-tls"]
        assert seen["sink splunk"] == f"ok: HEC at {hec.url} is healthy and accepts the token"
        assert seen["sink elastic"].startswith("ok: Elasticsearch 8.15.0") and "test-cluster" in seen["sink elastic"]
        # The collector refuses an empty body (400) once it accepted the credentials: it is there.
        assert (
            seen["sink collector"]
            == f"ok: {ndjson.url}/ingest answered an empty POST with HTTP 400 (reachable; no events sent)"
        )
        assert "All 7 reachable." in done.stdout
        # Nothing was sent: no event anywhere, no output file, no checkpoint.
        assert hec.events == [] and es.streams == {} and ndjson.lines == []
        assert [s.path for s in hec.seen] == ["/services/collector/health", "/services/collector/event"]
        assert not rsyslog.output("tcp").exists() or rsyslog.output("tcp").read_text() == ""
        assert not (tmp_path / "out").exists() and not (tmp_path / "state").exists()
        for secret in (HEC_TOKEN, ES_KEY, BEARER, azurite.account_key):
            assert secret not in done.stdout + done.stderr


@pytest.mark.azurite
@pytest.mark.rsyslog
def test_connect_says_why_each_endpoint_cannot_be_used(
    tmp_path: Path,
    azurite: Azurite,  # noqa: F811
    rsyslog: Rsyslog,  # noqa: F811
) -> None:
    closed = free_port()
    with (
        HecReceiver(HEC_TOKEN) as hec,
        ElasticsearchReceiver(api_key=ES_KEY) as es,
        NdjsonReceiver("/ingest") as ndjson,
        NdjsonReceiver("/ingest", required_headers={"Authorization": BEARER}) as guarded,
    ):
        config = tmp_path / "c.toml"
        config.write_text(
            f"""
[source]
type = "azure_blob"
connection_string = "${{AZURE_STORAGE_CONNECTION_STRING}}"
container = "no-such-container"
[checkpoint]
path = "state/cp.json"
[[sink]]
name = "siem-closed"
type = "syslog"
host = "127.0.0.1"
port = {closed}
[[sink]]
name = "siem-untrusted"
type = "syslog"
host = "{rsyslog.host}"
port = {rsyslog.ports["tls_untrusted"]}
protocol = "tls"
tls_ca_file = "{rsyslog.certs.ca}"
[[sink]]
name = "splunk"
type = "splunk_hec"
url = "{hec.url}"
token = "wrong-token-value"
[[sink]]
name = "elastic"
type = "elasticsearch"
url = "{es.url}"
api_key = "d3Jvbmc6a2V5"
[[sink]]
name = "collector"
type = "http"
url = "{ndjson.url}/wrong-path"
[[sink]]
name = "guarded"
type = "http"
url = "{guarded.url}/ingest"
"""
        )
        env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
        done = validate(config, "--connect", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    seen = outcome_lines(done.stdout)
    assert seen[f"source {azurite.account_name}/no-such-container"] == (
        f"FAILED: The storage container does not exist: source={azurite.account_name}/no-such-container "
        "status=404 code=ContainerNotFound"
    )
    assert (
        seen["sink siem-closed"] == f"FAILED: cannot connect to 127.0.0.1:{closed}: Connection refused (ECONNREFUSED)"
    )
    assert (
        seen["sink siem-untrusted"].startswith("FAILED: TLS certificate of")
        and "tls_ca_file" in seen["sink siem-untrusted"]
    )
    assert seen["sink splunk"].startswith("FAILED: Splunk HEC at") and "HTTP 403" in seen["sink splunk"]
    assert seen["sink elastic"].startswith("FAILED: Elasticsearch at") and "HTTP 401" in seen["sink elastic"]
    assert seen["sink collector"].startswith("FAILED: ") and "HTTP 404" in seen["sink collector"]
    assert seen["sink guarded"].startswith("FAILED: ") and "HTTP 401" in seen["sink guarded"]
    assert "7 of 7 cannot be used as configured." in done.stderr
    assert "wrong-token-value" not in done.stdout + done.stderr and "d3Jvbmc6a2V5" not in done.stdout
    assert "Traceback" not in done.stderr


def test_connect_on_a_healthy_sink_that_may_not_read_cluster_info_is_fine(tmp_path: Path) -> None:
    """An Elasticsearch API key with only create_doc on the data streams gets 403 for GET /: it can still write."""
    with ElasticsearchReceiver(api_key=ES_KEY) as es, HecReceiver(HEC_TOKEN) as hec:
        es.cluster_info_forbidden = True
        hec.unhealthy = True
        config = directory_source(
            tmp_path,
            f'[[sink]]\ntype = "elasticsearch"\nurl = "{es.url}"\napi_key = "{ES_KEY}"\n'
            f'[[sink]]\ntype = "splunk_hec"\nurl = "{hec.url}"\ntoken = "{HEC_TOKEN}"\n',
        )
        done = validate(config, "--connect")
        hec_url = hec.url
    seen = outcome_lines(done.stdout)
    assert (
        seen["sink elasticsearch[0]"].startswith("ok: ") and "accepted the credentials" in seen["sink elasticsearch[0]"]
    )
    assert seen["sink splunk_hec[1]"].startswith(f"FAILED: HEC at {hec_url} is not healthy: HTTP 503")
    assert seen["source local/logs"] == f"ok: the folder {tmp_path / 'logs'} is readable"
    assert done.returncode == 1
