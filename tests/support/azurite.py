"""A real Azurite blob service for tests, started on a free loopback port.

Use the ``azurite`` fixture (import it into the test module: ``from tests.support.azurite import azurite``)::

    def test_something(azurite: Azurite) -> None:
        cc = azurite.container_client("insights-logs-networksecuritygroupflowevent")  # created if missing
        cfg = {"type": "azure_blob", "container": cc.container_name, "connection_string": azurite.connection_string}

Every call to ``new_container()`` gives an empty container with a unique name, so tests sharing one
Azurite (the fixture is module-scoped) do not see each other's blobs. Azurite comes from the repo's
package.json (``npm install``); without it the test is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import urllib3
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContainerSasPermissions, generate_container_sas

from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]
ACCOUNT_NAME = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft; not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_names = itertools.count(1)


def azurite_binary() -> str | None:
    """node_modules/.bin/azurite-blob of this repo, else AZURITE_BLOB, else one on PATH."""
    local = REPO / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    return os.environ.get("AZURITE_BLOB") or shutil.which("azurite-blob")


@dataclass
class Azurite:
    host: str
    port: int
    location: Path
    process: subprocess.Popen[bytes] | None = None
    account_name: str = ACCOUNT_NAME
    account_key: str = ACCOUNT_KEY
    ca_file: Path | None = None  # set when Azurite serves HTTPS with this (self-signed) certificate
    _clients: list[BlobServiceClient] = field(default_factory=list)

    @property
    def scheme(self) -> str:
        return "https" if self.ca_file else "http"

    @property
    def account_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={self.account_name};AccountKey={self.account_key};"
            f"BlobEndpoint={self.account_url};"
        )

    def service_client(self) -> BlobServiceClient:
        verify = {"connection_verify": str(self.ca_file)} if self.ca_file else {}
        client = BlobServiceClient.from_connection_string(self.connection_string, **verify)
        self._clients.append(client)
        return client

    def container_client(self, name: str, create: bool = True) -> ContainerClient:
        """A client for container ``name`` (created unless create=False)."""
        cc = self.service_client().get_container_client(name)
        if create:
            with contextlib.suppress(ResourceExistsError):
                cc.create_container()
        return cc

    def new_container(self, stem: str = "flowlogs") -> ContainerClient:
        """An empty, freshly created container with a unique name."""
        return self.container_client(f"{stem}-{os.getpid()}-{next(_names)}")

    def upload_many(self, container: str, blobs: Iterable[tuple[str, bytes]], threads: int = 4) -> int:
        """Create many small blobs quickly (plain PUTs with a container SAS; 3x faster than the SDK)."""
        sas = generate_container_sas(
            self.account_name, container, account_key=self.account_key,
            permission=ContainerSasPermissions(write=True, create=True), expiry=datetime.now(UTC) + timedelta(hours=1),
        )  # fmt: skip
        http = urllib3.PoolManager(maxsize=threads)

        def put(item: tuple[str, bytes]) -> None:
            name, data = item
            url = f"{self.account_url}/{container}/{quote(name)}?{sas}"
            resp = http.request("PUT", url, body=data, headers={"x-ms-blob-type": "BlockBlob"})
            if resp.status != 201:
                raise RuntimeError(f"Azurite refused an upload: status={resp.status} blob={name}")

        with ThreadPoolExecutor(threads) as pool:
            done = sum(1 for _ in pool.map(put, blobs))
        http.clear()
        return done

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _answers(url: str, ca_file: Path | None = None) -> bool:
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    try:
        urllib.request.urlopen(f"{url}?comp=list", timeout=1, context=context).close()
    except urllib.error.HTTPError:
        return True  # 403 without credentials: the service is up
    except OSError:
        return False
    return True


def start_azurite(
    location: Path, timeout: float = 30.0, tls: tuple[Path, Path] | None = None, oauth: bool = False
) -> Azurite:
    """Start azurite-blob on a free port; the caller must call ``stop()``. Skips the test if Azurite is missing.

    ``tls`` (certificate, key) serves HTTPS; ``oauth`` then also accepts bearer tokens (Azurite checks
    their issuer, audience and lifetime, not their signature).
    """
    binary = azurite_binary()
    if binary is None:
        pytest.skip("Azurite is not installed: run `npm install` in the repository root (package.json pins azurite)")
    last_error = ""
    for _ in range(3):  # the free port can be taken between probing and binding
        port = free_port()
        log_path = location / f"azurite-{port}.log"
        extra = ["--cert", str(tls[0]), "--key", str(tls[1])] if tls else []
        if oauth:
            extra += ["--oauth", "basic"]
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location),
                    "--skipApiVersionCheck", "--disableTelemetry", "--loose", "--silent", *extra,
                ],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        az = Azurite("127.0.0.1", port, location, process, ca_file=tls[0] if tls else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(az.account_url, az.ca_file):
                return az
            time.sleep(0.1)
        az.stop()
        last_error = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"Azurite did not start: binary={binary} output={last_error!r}")


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """A running Azurite blob service (one per test module), stopped at teardown."""
    az = start_azurite(tmp_path_factory.mktemp("azurite"))
    try:
        yield az
    finally:
        az.stop()
