"""A real, unprivileged rsyslogd on loopback ports, writing what it parsed to one JSON file per listener.

Listeners (``Rsyslog.ports[name]``):

- ``udp``: imudp.
- ``tcp``: imtcp, plain; octet-counted (RFC 6587) and LF-framed messages both work.
- ``tls``: imtcp with the gtls driver, server certificate for ``localhost`` and ``127.0.0.1``, client
  certificates optional (authMode anon).
- ``mtls``: as ``tls`` but a client certificate signed by the test CA is required (x509/certvalid).
- ``tls_wrongname``: certificate from the trusted CA, for ``wrong.example.net`` only.
- ``tls_untrusted``: certificate for ``localhost``/``127.0.0.1`` from a CA the client does not trust.

Each listener has its own ruleset and output file; a line holds the fields rsyslog parsed (PRI,
timestamp, hostname, app-name, procid, msgid, structured data, protocol version, tag, message).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.net import free_port

HOST = "127.0.0.1"
STREAM_LISTENERS = ("tcp", "tls", "mtls", "tls_wrongname", "tls_untrusted")
LISTENERS = ("udp", *STREAM_LISTENERS)

# One JSON object per message; ``:::json`` escapes each value for a JSON string.
_FIELDS = {
    "pri": "pri",
    "timestamp": "timereported:::date-rfc3339",
    "hostname": "hostname:::json",
    "app_name": "app-name:::json",
    "procid": "procid:::json",
    "msgid": "msgid:::json",
    "sd": "structured-data:::json",
    "version": "protocol-version",
    "tag": "syslogtag:::json",
    "msg": "msg:::json",
}
_TEMPLATE = "{" + ",".join(f'\\"{k}\\":\\"%{v}%\\"' for k, v in _FIELDS.items()) + "}\\n"


def find_rsyslogd() -> str | None:
    found = shutil.which("rsyslogd")
    if found:
        return found
    for candidate in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


# --- certificates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA the client trusts
    server_cert: Path  # localhost + 127.0.0.1, from ca
    server_key: Path
    client_cert: Path  # clientAuth, from ca
    client_key: Path
    wrongname_cert: Path  # wrong.example.net, from ca
    wrongname_key: Path
    untrusted_ca: Path
    untrusted_cert: Path  # localhost + 127.0.0.1, from untrusted_ca
    untrusted_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nsg-forwarder tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _make_ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, cn: str, names: list[str], client: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_certs(directory: Path) -> Certs:
    """A trusted CA with server, client and wrong-name certificates, and an untrusted CA with a server certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    def save(label: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        paths[label] = directory / f"{label}.pem"
        paths[label].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            paths[f"{label}_key"] = directory / f"{label}.key"
            _write_key(paths[f"{label}_key"], key)

    ca, ca_key = _make_ca("nsg-forwarder test CA")
    save("ca", ca)
    save("server", *_make_leaf(ca, ca_key, "localhost", ["localhost", "127.0.0.1"], client=False))
    save("client", *_make_leaf(ca, ca_key, "nsg-forwarder-client", ["nsg-forwarder-client"], client=True))
    save("wrongname", *_make_leaf(ca, ca_key, "wrong.example.net", ["wrong.example.net"], client=False))
    other, other_key = _make_ca("some other CA")
    save("untrusted_ca", other)
    save("untrusted", *_make_leaf(other, other_key, "localhost", ["localhost", "127.0.0.1"], client=False))
    return Certs(
        ca=paths["ca"],
        server_cert=paths["server"],
        server_key=paths["server_key"],
        client_cert=paths["client"],
        client_key=paths["client_key"],
        wrongname_cert=paths["wrongname"],
        wrongname_key=paths["wrongname_key"],
        untrusted_ca=paths["untrusted_ca"],
        untrusted_cert=paths["untrusted"],
        untrusted_key=paths["untrusted_key"],
    )


# --- the receiver -------------------------------------------------------------------------------


def _bound_ports(proto: str) -> set[int]:
    """Loopback ports in LISTEN (tcp) or bound (udp) state, from /proc/net."""
    want = "0A" if proto == "tcp" else "07"
    ports: set[int] = set()
    try:
        lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
    except OSError:
        return ports
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == want:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class Rsyslog:
    """One rsyslogd process; ``restart()`` stops it and starts it again on the same ports."""

    def __init__(self, workdir: Path, certs: Certs, binary: str):
        self.dir = workdir
        self.certs = certs
        self.binary = binary
        self.host = HOST
        self.ports: dict[str, int] = {"udp": free_port(socket.SOCK_DGRAM)}
        for name in STREAM_LISTENERS:
            self.ports[name] = free_port(socket.SOCK_STREAM)
        self.conf = workdir / "rsyslog.conf"
        self.pidfile = workdir / "rsyslogd.pid"
        self.stderr_path = workdir / "rsyslogd.stderr"
        (workdir / "spool").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self._config())
        self.proc: subprocess.Popen[bytes] | None = None

    def output(self, listener: str) -> Path:
        return self.dir / f"{listener}.jsonl"

    def _config(self) -> str:
        c = self.certs
        tls = 'streamDriver.name="gtls" streamDriver.mode="1"'
        inputs = [
            f'input(type="imudp" address="{HOST}" port="{self.ports["udp"]}" ruleset="udp")',
            f'input(type="imtcp" address="{HOST}" port="{self.ports["tcp"]}" ruleset="tcp")',
            f'input(type="imtcp" address="{HOST}" port="{self.ports["tls"]}" ruleset="tls" {tls} '
            'streamDriver.authMode="anon")',
            f'input(type="imtcp" address="{HOST}" port="{self.ports["mtls"]}" ruleset="mtls" {tls} '
            'streamDriver.authMode="x509/certvalid")',
            f'input(type="imtcp" address="{HOST}" port="{self.ports["tls_wrongname"]}" ruleset="tls_wrongname" {tls} '
            f'streamDriver.authMode="anon" streamDriver.certFile="{c.wrongname_cert}" '
            f'streamDriver.keyFile="{c.wrongname_key}")',
            f'input(type="imtcp" address="{HOST}" port="{self.ports["tls_untrusted"]}" ruleset="tls_untrusted" {tls} '
            f'streamDriver.authMode="anon" streamDriver.certFile="{c.untrusted_cert}" '
            f'streamDriver.keyFile="{c.untrusted_key}" streamDriver.caFile="{c.untrusted_ca}")',
        ]
        rulesets = [
            f'ruleset(name="{name}") {{ action(type="omfile" file="{self.output(name)}" template="parsed") }}'
            for name in LISTENERS
        ]
        return "\n".join(
            [
                f'global(workDirectory="{self.dir / "spool"}" maxMessageSize="64k"',
                f'       defaultNetstreamDriverCAFile="{c.ca}"',
                f'       defaultNetstreamDriverCertFile="{c.server_cert}"',
                f'       defaultNetstreamDriverKeyFile="{c.server_key}")',
                'module(load="imudp")',
                'module(load="imtcp" maxSessions="200")',
                f'template(name="parsed" type="string" string="{_TEMPLATE}")',
                *inputs,
                *rulesets,
                # rsyslog's own messages (start, TLS errors) land in the default ruleset.
                f'action(type="omfile" file="{self.dir / "internal.log"}")',
                "",
            ]
        )

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None, "rsyslogd is already running"
        with self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [self.binary, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                cwd=self.dir,
            )
        deadline = time.monotonic() + timeout
        tcp_ports = {self.ports[n] for n in STREAM_LISTENERS}
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"rsyslogd exited at start with code {code}:\n{self.diagnostics()}")
            if tcp_ports <= _bound_ports("tcp") and self.ports["udp"] in _bound_ports("udp"):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rsyslogd did not open its ports within {timeout}s:\n{self.diagnostics()}")
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def diagnostics(self) -> str:
        out = []
        for path in (self.stderr_path, self.dir / "internal.log"):
            if path.exists():
                out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)

    def messages(self, listener: str) -> list[dict[str, Any]]:
        """Every complete message rsyslog wrote for this listener so far."""
        path = self.output(listener)
        if not path.exists():
            return []
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1  # a line still being written is not a message yet
        return [json.loads(line) for line in data[:cut].splitlines()]

    def wait_for(self, listener: str, count: int, timeout: float = 20.0, settle: float = 0.3) -> list[dict[str, Any]]:
        """Wait until at least ``count`` messages arrived, then ``settle`` seconds more to catch extras."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.messages(listener)
            if len(got) >= count:
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"rsyslog listener {listener} got {len(got)} of {count} messages within {timeout}s\n"
                    + self.diagnostics()
                )
            time.sleep(0.05)
        if settle:
            time.sleep(settle)
            got = self.messages(listener)
        return got

    def internal_log(self) -> str:
        path = self.dir / "internal.log"
        return path.read_text(errors="replace") if path.exists() else ""


def parsed_msg(message: dict[str, Any]) -> str:
    """The MSG part as sent: rsyslog keeps the space after an RFC 3164 tag's colon in %msg%."""
    msg: str = message["msg"]
    if message.get("version") != "1" and msg.startswith(" "):
        return msg[1:]
    return msg


def _has_gtls_driver() -> bool:
    candidates = [Path("/usr/lib/rsyslog"), Path("/usr/lib64/rsyslog"), *Path("/usr/lib").glob("*/rsyslog")]
    return any((d / "lmnsd_gtls.so").exists() for d in candidates)


@pytest.fixture(scope="session")
def syslog_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("syslog-certs"))


@pytest.fixture
def rsyslog(tmp_path: Path, syslog_certs: Certs) -> Iterator[Rsyslog]:
    binary = find_rsyslogd()
    if binary is None:
        pytest.skip("rsyslogd not found (install the Debian packages rsyslog and rsyslog-gnutls)")
    if not _has_gtls_driver():
        pytest.skip("rsyslog's GnuTLS driver lmnsd_gtls.so not found (install the Debian package rsyslog-gnutls)")
    workdir = tmp_path / "rsyslog"
    workdir.mkdir()
    receiver = Rsyslog(workdir, syslog_certs, binary)
    try:
        receiver.start()
        yield receiver
    finally:
        receiver.stop()
