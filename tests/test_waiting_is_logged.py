"""A forwarder waiting out an outage says so, in the log, at least every REMIND_EVERY seconds: what it waits
for (which sink or storage account, which request), for how long already, and the last error.

The real ``nsg-forwarder run --once`` runs against a closed port; only REMIND_EVERY is shortened (30 s in
production) by starting the CLI through a two-line wrapper, so that the test does not wait minutes.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from forwarder.samples.generator import BlobSpec, write_blob
from tests.support.net import free_port

WRAPPER = (
    "import sys, forwarder.sinks.retry as retry; retry.REMIND_EVERY = 0.5; "
    "from forwarder.cli import main; sys.exit(main(sys.argv[1:]))"
)


def run_until(config: Path, wanted: str, count: int) -> str:
    """Run ``run --once`` until ``wanted`` appeared ``count`` times in its log (or 60 s), then SIGTERM it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, "run", "--config", str(config), "--once"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and sum(wanted in line for line in lines) < count:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    return "".join(lines) + rest


def test_run_once_against_a_sink_that_is_down_keeps_saying_what_it_waits_for(tmp_path: Path) -> None:
    write_blob(tmp_path / "logs", BlobSpec(minutes=2, tuples_per_minute=3))
    port = free_port()
    config = tmp_path / "c.toml"
    config.write_text(
        '[source]\ntype = "directory"\npath = "logs"\n[checkpoint]\npath = "state/cp.json"\n'
        "[service]\nshutdown_grace = 0\n"
        "[retry]\ninitial = 3\nmaximum = 3\n"
        f'[[sink]]\nname = "siem"\ntype = "syslog"\nhost = "127.0.0.1"\nport = {port}\n'
    )
    log = run_until(config, "Still waiting for the sink to take events again", 2)
    reminder = next(line for line in log.splitlines() if "Still waiting for the sink" in line)
    assert f"sink=siem what=send 6 events to 127.0.0.1:{port}" in reminder
    assert "failing_for_s=" in reminder and "next_attempt_in_s=" in reminder
    assert f"error=cannot connect to 127.0.0.1:{port}: Connection refused" in reminder
    assert "Traceback" not in log


def test_run_once_against_storage_that_is_down_keeps_saying_what_it_waits_for(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "c.toml"
    config.write_text(
        '[source]\ntype = "azure_blob"\ncontainer = "insights-logs-networksecuritygroupflowevent"\n'
        f'account_url = "http://127.0.0.1:{port}/acct1"\nsas_token = "sv=2021&sig=s3cr3tSIGNATURE"\n'
        '[checkpoint]\npath = "state/cp.json"\n[service]\nshutdown_grace = 0\n'
        '[[sink]]\ntype = "file"\npath = "out/flows.ndjson"\n'
    )
    config.chmod(0o600)
    log = run_until(config, "Still waiting for storage to answer", 2)
    reminder = next(line for line in log.splitlines() if "Still waiting for storage" in line)
    assert "source=acct1/insights-logs-networksecuritygroupflowevent what=list folders under" in reminder
    assert "failing_for_s=" in reminder and "Connection refused" in reminder
    assert "s3cr3tSIGNATURE" not in log and "Traceback" not in log


def test_a_retry_line_names_the_blob_once(tmp_path: Path) -> None:
    """Elasticsearch's request description carries the whole blob path; the error repeated it (~600 chars)."""
    write_blob(tmp_path / "logs", BlobSpec(minutes=1, tuples_per_minute=3))
    config = tmp_path / "c.toml"
    config.write_text(
        '[source]\ntype = "directory"\npath = "logs"\n[checkpoint]\npath = "state/cp.json"\n'
        "[service]\nshutdown_grace = 0\n"
        f'[[sink]]\ntype = "elasticsearch"\nurl = "http://127.0.0.1:{free_port()}"\n'
    )
    log = run_until(config, "Retrying after a transient failure", 1)
    line = next(line for line in log.splitlines() if "Retrying after a transient failure" in line)
    assert line.count("PT1H.json") == 1, line
    assert "error=cannot connect" in line
