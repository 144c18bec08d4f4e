"""account_url alone: DefaultAzureCredential gets a managed-identity token and reads Azurite over HTTPS.

Azurite with ``--oauth basic`` accepts bearer tokens (it checks issuer, audience and lifetime) and only
over HTTPS, so it runs with a self-signed certificate that the source trusts through ``tls_ca_file``.
The token comes from a local managed-identity endpoint of the App Service kind (IDENTITY_ENDPOINT and
IDENTITY_HEADER), the same protocol azure-identity speaks on App Service and Azure Functions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from forwarder.samples.generator import BlobSpec
from tests.support.azure_writer import AzureWriter
from tests.support.azurite import Azurite, start_azurite
from tests.support.events import validate_lines
from tests.support.http_receivers import make_self_signed
from tests.support.identity import CLIENT_ID, IDENTITY_HEADER, IdentityEndpoint, identity_env


@pytest.fixture(scope="module")
def azurite_oauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    tls = make_self_signed(tmp_path_factory.mktemp("azurite-tls"), "localhost")
    az = start_azurite(tmp_path_factory.mktemp("azurite-oauth"), tls=(tls.cert, tls.key), oauth=True)
    try:
        yield az
    finally:
        az.stop()


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
