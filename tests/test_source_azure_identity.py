"""account_url alone: DefaultAzureCredential gets a managed-identity token and reads Azurite over HTTPS.

Azurite with ``--oauth basic`` accepts bearer tokens (it checks issuer, audience and lifetime) and only
over HTTPS, so it runs with a self-signed certificate that the source trusts through ``tls_ca_file``.
The token comes from a local managed-identity endpoint of the App Service kind (IDENTITY_ENDPOINT and
IDENTITY_HEADER), the same protocol azure-identity speaks on App Service and Azure Functions.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from forwarder.samples.generator import BlobSpec
from tests.support.azure_writer import AzureWriter
from tests.support.azurite import Azurite, start_azurite
from tests.support.events import validate_lines
from tests.support.http_receivers import make_self_signed

IDENTITY_HEADER = "identity-header-SECRET-8f9e"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"


def fake_jwt(audience: str) -> str:
    """An unsigned token with the claims Azurite checks: issuer, audience, lifetime."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"aud": audience, "iss": "https://sts.windows.net/00000000-0000-0000-0000-00000000abcd/",
              "iat": now - 60, "nbf": now - 60, "exp": now + 3600, "oid": "forwarder-test"}  # fmt: skip
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJlLVNFQ1JFVA"


class IdentityEndpoint:
    """An App Service managed-identity endpoint: GET ?resource=...&api-version=2019-08-01 with X-IDENTITY-HEADER."""

    def __init__(self, audience: str = "https://storage.azure.com") -> None:
        self.audience = audience
        self.requests: list[dict[str, list[str]]] = []
        self.tokens: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                outer.requests.append(query)
                if self.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
                    self._reply(401, {"error": "wrong identity header"})
                    return
                token = fake_jwt(outer.audience)
                outer.tokens.append(token)
                resource = query.get("resource", [""])[0]
                expires = str(int(time.time()) + 3600)
                self._reply(200, {"access_token": token, "expires_on": expires, "resource": resource,
                                  "token_type": "Bearer", "client_id": query.get("client_id", [""])[0]})  # fmt: skip

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/msi/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def azurite_oauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    tls = make_self_signed(tmp_path_factory.mktemp("azurite-tls"), "localhost")
    az = start_azurite(tmp_path_factory.mktemp("azurite-oauth"), tls=(tls.cert, tls.key), oauth=True)
    try:
        yield az
    finally:
        az.stop()


def identity_env(endpoint: IdentityEndpoint) -> dict[str, str]:
    """A process environment in which the managed identity is the only credential DefaultAzureCredential finds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_"))}
    return {**env, "IDENTITY_ENDPOINT": endpoint.url, "IDENTITY_HEADER": IDENTITY_HEADER}


def write_config(tmp: Path, az: Azurite, container: str, extra: str = "") -> Path:
    path = tmp / "forwarder.toml"
    path.write_text(
        f'[source]\ntype = "azure_blob"\naccount_url = "{az.account_url}"\ncontainer = "{container}"\n'
        f'tls_ca_file = "{az.ca_file}"\nlate_commit_grace = 7200\n{extra}\n'
        f'[checkpoint]\npath = "{tmp / "state" / "checkpoints.json"}"\n'
        f'[[sink]]\ntype = "file"\nformat = "ecs"\npath = "{tmp / "out" / "flows.ndjson"}"\n'
    )
    return path


def run_once(config: Path, env: dict[str, str]) -> tuple[int, str]:
    """``run --once`` in exactly ``env`` (tests/support/process.start_forwarder can only add variables)."""
    done = subprocess.run(
        [sys.executable, "-m", "forwarder", "run", "--config", str(config), "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
    )
    return done.returncode, done.stdout + done.stderr


def test_a_managed_identity_token_reads_the_container(azurite_oauth: Azurite, tmp_path: Path) -> None:
    cc = azurite_oauth.new_container()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    spec = BlobSpec(hour=hour, minutes=3, tuples_per_minute=4)
    AzureWriter(cc).write_all(spec)
    endpoint = IdentityEndpoint()
    try:
        config = write_config(tmp_path, azurite_oauth, cc.container_name, f'managed_identity_client_id = "{CLIENT_ID}"')
        code, output = run_once(config, identity_env(endpoint))
    finally:
        endpoint.close()
    assert code == 0, output
    assert "auth=default_credential" in output
    lines = (tmp_path / "out" / "flows.ndjson").read_text().splitlines()
    assert len(lines) == 12
    validate_lines("ecs", lines)
    # One token for storage, for the user-assigned identity asked for; neither it nor the header is logged.
    assert endpoint.requests and all(q["resource"] == ["https://storage.azure.com"] for q in endpoint.requests)
    assert all(q.get("client_id") == [CLIENT_ID] for q in endpoint.requests)
    for secret in [IDENTITY_HEADER, *endpoint.tokens]:
        assert secret not in output


def test_a_token_storage_refuses_stops_the_service_with_a_clear_error(azurite_oauth: Azurite, tmp_path: Path) -> None:
    cc = azurite_oauth.new_container()
    AzureWriter(cc).write_all(BlobSpec(minutes=1, tuples_per_minute=2))
    endpoint = IdentityEndpoint(audience="https://vault.azure.net")  # a token for another service
    try:
        code, output = run_once(write_config(tmp_path, azurite_oauth, cc.container_name), identity_env(endpoint))
    finally:
        endpoint.close()
    assert code != 0 and "Traceback" not in output
    assert "audience" in output.lower() or "authentication" in output.lower(), output
    for secret in [IDENTITY_HEADER, *endpoint.tokens]:
        assert secret not in output


def test_no_credential_at_all_says_what_account_url_alone_needs(azurite_oauth: Azurite, tmp_path: Path) -> None:
    cc = azurite_oauth.new_container()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_"))}
    # No identity endpoint, no environment credential, no Azure CLI, and the instance metadata service
    # pointed at a closed port, in case the machine running the tests is an Azure VM with an identity.
    env["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = "http://127.0.0.1:9"
    code, output = run_once(write_config(tmp_path, azurite_oauth, cc.container_name), env)
    assert code == 1 and "Traceback" not in output
    assert "No Azure credential could get a token for storage" in output
    assert "managed_identity_client_id" in output and "connection_string" in output
