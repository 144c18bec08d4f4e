"""What an operator meets: sd_notify under systemd, the metrics and health endpoints, signals."""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from forwarder.checkpoints.store import CheckpointStore
from forwarder.samples.generator import BlobSpec, write_blob
from tests.support.events import validate_lines
from tests.support.net import free_port
from tests.support.process import directory_config, kill9, start_forwarder


def test_sd_notify_ready_status_watchdog_and_stopping(tmp_path: Path) -> None:
    write_blob(tmp_path / "logs", BlobSpec(minutes=3, tuples_per_minute=5))
    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.settimeout(20)
    env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
    proc = start_forwarder(directory_config(tmp_path), env=env)
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum("WATCHDOG=1" in m for m in messages) < 3:
            messages.append(listener.recv(4096).decode())
        ready = next(i for i, m in enumerate(messages) if "READY=1" in m)
        # READY only once the sinks were opened and the source answered: the output exists by then or soon.
        assert (tmp_path / "out").exists()
        assert any(m.startswith("STATUS=Forwarding") or "\nSTATUS=Forwarding" in m for m in messages[ready:])
        assert sum("WATCHDOG=1" in m for m in messages) >= 3
        proc.send_signal(signal.SIGTERM)
        while True:
            m = listener.recv(4096).decode()
            if "STOPPING=1" in m:
                break
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            kill9(proc)
        listener.close()


def scrape(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_metrics_agree_with_what_the_sink_received_and_health_endpoints_answer(tmp_path: Path) -> None:
    write_blob(tmp_path / "logs", BlobSpec(minutes=4, tuples_per_minute=7))
    port = free_port()
    proc = start_forwarder(directory_config(tmp_path, f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'))
    try:
        out = tmp_path / "out" / "flows.ndjson"
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                status, text = scrape(port, "/metrics")
            except OSError:
                continue
            if status == 200 and 'nsg_forwarder_events_delivered_total{sink="file[0]"} 28.0' in text:
                break
        lines = out.read_text().splitlines()
        validate_lines("ecs", lines)
        assert metric(text, 'nsg_forwarder_events_delivered_total{sink="file[0]"}') == len(lines) == 28
        assert metric(text, "nsg_forwarder_tuples_read_total") == 28
        assert metric(text, "nsg_forwarder_bytes_downloaded_total") > 0
        assert metric(text, 'nsg_forwarder_sink_up{sink="file[0]"}') == 1
        assert metric(text, "nsg_forwarder_lag_seconds") > 0
        assert scrape(port, "/healthz")[0] == 200
        assert scrape(port, "/readyz") == (200, "ok\n")
        assert scrape(port, "/nope")[0] == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err.decode()
    # The log says that work is going on, not only that the service started and stopped.
    assert "Forwarding: events=28 new_events=28 polls=" in err.decode()


def test_a_metrics_port_in_use_stops_the_service_with_the_key_and_no_traceback(tmp_path: Path) -> None:
    write_blob(tmp_path / "logs", BlobSpec(minutes=1, tuples_per_minute=2))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start_forwarder(directory_config(tmp_path, f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'))
        _, err = proc.communicate(timeout=30)
    text = err.decode()
    assert proc.returncode == 2, text
    assert f"metrics.listen = '127.0.0.1:{port}'" in text and "Address already in use" in text
    assert "Traceback" not in text


def test_sighup_reopens_the_output_file_for_logrotate(tmp_path: Path) -> None:
    writer_spec = BlobSpec(minutes=2, tuples_per_minute=3)
    write_blob(tmp_path / "logs", writer_spec)
    config = directory_config(tmp_path, poll=0.1)
    text = config.read_text().replace('format = "ecs"\n', 'format = "ecs"\nrotate_bytes = 0\n')
    config.write_text(text)
    proc = start_forwarder(config)
    try:
        out = tmp_path / "out" / "flows.ndjson"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (out.exists() and len(out.read_text().splitlines()) == 6):
            time.sleep(0.1)
        os.rename(out, tmp_path / "out" / "flows.ndjson.1")
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        write_blob(tmp_path / "logs", BlobSpec(minutes=2, tuples_per_minute=3, mac="000D3A0000FF"))
        while time.monotonic() < deadline and not (out.exists() and len(out.read_text().splitlines()) == 6):
            time.sleep(0.1)
        assert len(out.read_text().splitlines()) == 6
        assert len((tmp_path / "out" / "flows.ndjson.1").read_text().splitlines()) == 6
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_a_checkpoint_file_that_cannot_be_written_does_not_stop_delivery(tmp_path: Path) -> None:
    write_blob(tmp_path / "logs", BlobSpec(minutes=2, tuples_per_minute=3))
    proc = start_forwarder(directory_config(tmp_path, poll=0.1))
    out = tmp_path / "out" / "flows.ndjson"
    state = tmp_path / "state"
    checkpoints = state / "checkpoints.json"

    def wait_until(done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None and not done():
            time.sleep(0.1)
        assert done(), f"timed out; forwarder exit code {proc.poll()}"

    def lines() -> list[str]:
        return out.read_text().splitlines() if out.exists() else []

    try:
        wait_until(lambda: len(lines()) == 6 and checkpoints.exists())
        # The folder disappears and a file takes its name: every save now fails, whoever runs it.
        state.rename(tmp_path / "state.saved")
        state.write_text("not a folder")
        second = BlobSpec(minutes=2, tuples_per_minute=3, mac="000D3A0000FF")
        write_blob(tmp_path / "logs", second)
        wait_until(lambda: len(lines()) == 12)
        time.sleep(0.5)  # a few more polls, each failing to save
        state.unlink()
        (tmp_path / "state.saved").rename(state)
        wait_until(lambda: any(second.blob_name in key for key, _ in CheckpointStore.load(checkpoints).items()))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    text = err.decode()
    assert proc.returncode == 0, text
    assert f"Could not write the checkpoint file: path={checkpoints}" in text
    assert text.count("Could not write the checkpoint file") == 1, "logged once, not on every poll"
    assert "The checkpoint file is written again" in text and "Traceback" not in text
    validate_lines("ecs", lines())

    # The positions saved after the folder came back hold: a new run sends nothing again.
    again = start_forwarder(directory_config(tmp_path, poll=0.1), "--once")
    assert again.wait(timeout=30) == 0
    assert len(lines()) == 12


def test_run_once_exits_non_zero_when_it_cannot_save_the_checkpoints(tmp_path: Path) -> None:
    write_blob(tmp_path / "logs", BlobSpec(minutes=2, tuples_per_minute=3))
    # A name that can be looked up (no file yet) but whose temporary sibling is too long to create:
    # a save that fails even for root, as on a full or read-only disk.
    checkpoints = tmp_path / "state" / ("c" * 240 + ".json")  # its lock file name fits, a temporary name not
    config = directory_config(tmp_path)
    config.write_text(config.read_text().replace(str(tmp_path / "state" / "checkpoints.json"), str(checkpoints)))
    proc = start_forwarder(config, "--once")
    _, err = proc.communicate(timeout=30)
    text = err.decode()
    assert proc.returncode == 1, text
    assert "Stopping without saving the latest positions" in text and "Traceback" not in text
    assert f"Could not write the checkpoint file: path={checkpoints} error=File name too long" in text
    assert len((tmp_path / "out" / "flows.ndjson").read_text().splitlines()) == 6
