"""Turn the ``[source]`` credentials into a ContainerClient, and keep secrets out of messages.

Four ways to authenticate, in this order of precedence:

- ``connection_string`` (account key or SAS inside it; also what Azurite uses),
- ``account_url`` + ``account_key``,
- ``account_url`` + ``sas_token``,
- ``account_url`` alone: ``DefaultAzureCredential`` (managed identity, workload identity, Azure CLI...).

Azure SDK errors can quote request URLs with their SAS query string, so every message that
leaves the source goes through ``Scrubber`` first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.storage.blob import ContainerClient

_PATTERNS = [
    # SAS signature in a URL or a SAS token: ...&sig=abc%2F...
    (re.compile(r"(?i)(\bsig=)[^&\s'\";]+"), r"\1REDACTED"),
    # Connection string parts.
    (re.compile(r"(?i)(AccountKey=)[^;\s'\"]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(SharedAccessSignature=)[^;\s'\"]+"), r"\1REDACTED"),
    # Authorization headers echoed in debug output.
    (re.compile(r"(?i)(SharedKey(?:Lite)? [^:\s]+:)[^\s'\",]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(Bearer )[^\s'\",]+"), r"\1REDACTED"),
]


@dataclass
class Scrubber:
    """Removes known secrets and anything shaped like a signature or key from a message."""

    secrets: list[str] = field(default_factory=list)

    def add(self, secret: str | None) -> None:
        # Very short values would blank out ordinary words; they are not real keys anyway.
        if secret and len(secret) >= 8:
            self.secrets.append(secret)
            if secret.startswith("?"):
                self.secrets.append(secret[1:])

    def __call__(self, text: object) -> str:
        out = str(text)
        for secret in self.secrets:
            out = out.replace(secret, "REDACTED")
        for pattern, repl in _PATTERNS:
            out = pattern.sub(repl, out)
        return out


@dataclass
class Connection:
    client: ContainerClient
    account_name: str
    method: str  # "connection_string" | "account_key" | "sas_token" | "default_credential", for logs
    scrub: Scrubber
    close_credential: Callable[[], None] | None = None


def account_name_from_url(account_url: str) -> str | None:
    """ "myacct" from https://myacct.blob.core.windows.net or http://127.0.0.1:10000/myacct (emulator style)."""
    parts = urlsplit(account_url)
    host = parts.hostname or ""
    if ".blob." in host:
        return host.split(".", 1)[0]
    path = parts.path.strip("/")
    return path.split("/", 1)[0] if path else None


def _connection_string_parts(conn_str: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in conn_str.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            parts[key.strip().lower()] = value.strip()
    return parts


def connect(
    cfg: Mapping[str, Any],
    container: str,
    client_options: Mapping[str, Any],
) -> Connection:
    """A ContainerClient for cfg's credentials. Raises ValueError (no secret in it) for an unusable combination."""
    scrub = Scrubber()
    options = dict(client_options)
    if cfg.get("api_version"):
        options["api_version"] = str(cfg["api_version"])
    ca_file = cfg.get("tls_ca_file")
    if ca_file:
        try:
            with open(str(ca_file), "rb") as f:
                if b"-----BEGIN CERTIFICATE-----" not in f.read():
                    raise ValueError(f"source.tls_ca_file holds no PEM certificate: path={ca_file}")
        except OSError as exc:
            raise ValueError(f"source.tls_ca_file cannot be read: path={ca_file} error={exc.strerror}") from None
        options["connection_verify"] = str(ca_file)  # a CA bundle to trust; verification stays on
    client_id = cfg.get("managed_identity_client_id")
    conn_str = cfg.get("connection_string")
    account_url = cfg.get("account_url")
    account_key = cfg.get("account_key")
    sas_token = cfg.get("sas_token")
    if client_id and (conn_str or account_key or sas_token):
        raise ValueError("source.managed_identity_client_id applies to account_url alone (DefaultAzureCredential)")
    if conn_str:
        if account_url or account_key or sas_token:
            raise ValueError("source: give connection_string or account_url (+ account_key or sas_token), not both")
        parts = _connection_string_parts(str(conn_str))
        scrub.add(parts.get("accountkey"))
        scrub.add(parts.get("sharedaccesssignature"))
        try:
            client = ContainerClient.from_connection_string(str(conn_str), container, **options)
        except ValueError as exc:
            raise ValueError(f"source.connection_string is not a valid connection string: {scrub(exc)}") from None
        if not client.account_name:
            raise ValueError("source.connection_string names no storage account (AccountName or BlobEndpoint)")
        return Connection(client, client.account_name, "connection_string", scrub)
    if not account_url:
        raise ValueError("source: set connection_string, or account_url (with account_key, sas_token, or neither)")
    url = str(account_url)
    if "?" in url:
        raise ValueError("source.account_url must not carry a query string; put the SAS token in source.sas_token")
    account = cfg.get("account_name") or account_name_from_url(url)
    if account_key and sas_token:
        raise ValueError("source: give account_key or sas_token, not both")
    if account_key:
        scrub.add(str(account_key))
        if not account:
            raise ValueError(f"source.account_url names no storage account; set source.account_name: url={url}")
        key_cred = AzureNamedKeyCredential(str(account), str(account_key))
        client = ContainerClient(url, container, credential=key_cred, **options)
        return Connection(client, str(account), "account_key", scrub)
    if sas_token:
        token = str(sas_token).lstrip("?")
        scrub.add(token)
        client = ContainerClient(url, container, credential=AzureSasCredential(token), **options)
        return Connection(client, str(account or client.account_name or ""), "sas_token", scrub)
    # Imported here: azure-identity is heavy and only this path needs it.
    from azure.identity import DefaultAzureCredential

    # A user-assigned identity is chosen by its client id (AZURE_CLIENT_ID in the environment does the same).
    options_id = {"managed_identity_client_id": str(client_id)} if client_id else {}
    credential = DefaultAzureCredential(**options_id)
    try:
        client = ContainerClient(url, container, credential=credential, **options)
    except ValueError as exc:
        credential.close()
        raise ValueError(f"source.account_url cannot be used with a token credential: {scrub(exc)}") from None
    name = str(account or client.account_name or "")
    return Connection(client, name, "default_credential", scrub, close_credential=credential.close)
