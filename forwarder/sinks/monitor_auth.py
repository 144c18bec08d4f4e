"""Entra ID tokens for the Azure Monitor Logs Ingestion API: which credential, which scope, and one
cached token shared by every request in flight, renewed before it expires.

Three ways to authenticate, chosen by the keys present:

- ``tenant_id`` + ``client_id`` + ``client_secret`` (or ``client_secret_file``): an app registration;
- ``managed_identity_client_id``: that user-assigned managed identity;
- none of them: ``DefaultAzureCredential`` (environment, workload identity, managed identity, Azure CLI).

The scope is ``<audience>/.default``: https://monitor.azure.com for the public cloud,
https://monitor.azure.us or https://monitor.azure.cn for the sovereign ones. Tokens never reach a
message; the caller strips anything shaped like one from what it logs (``TokenRedactor``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from forwarder.sinks.base import SinkFatal
from forwarder.sinks.http_common import Redactor, SinkConfigError, get_str
from forwarder.sinks.retry import TransientError

log = logging.getLogger("forwarder.sinks.azure_monitor")

DEFAULT_AUDIENCE = "https://monitor.azure.com"
# Renew this long before a token expires: a request signed just before expiry may reach the service after it.
RENEW_MARGIN_S = 300.0
_GUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
# A JSON Web Token (what Entra ID issues): base64url header "eyJ...", payload, signature.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


class Credential(Protocol):
    def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...

    def close(self) -> None: ...


class TokenRedactor(Redactor):
    """The sink's secrets and anything shaped like a bearer token removed from text shown to people."""

    def __call__(self, text: str) -> str:
        return _JWT.sub("<redacted>", super().__call__(text))


class Tokens:
    """One token for ``scope``, fetched on first use and again when the credential says it should be
    refreshed (``refresh_on``) or ``RENEW_MARGIN_S`` before it expires, whichever comes first.

    Thread-safe: requests in flight wait for one fetch rather than each starting their own. When a
    renewal fails while the current token is still valid, the current token is used and the renewal
    tried again on the next request; once it has expired, failing to get one is a TransientError.
    """

    def __init__(self, credential: Credential, scope: str, sink: str, how: str, redact: Redactor):
        self.credential = credential
        self.scope = scope
        self.sink = sink
        self.how = how  # for messages: "DefaultAzureCredential", "managed identity ...", "client secret ..."
        self._redact = redact
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_on = 0.0
        self._renew_at = 0.0
        self.fetches = 0

    def first(self) -> None:
        """Get a token now (at open): a credential that cannot work stops the sink with the reason."""
        try:
            with self._lock:
                self._fetch()
        except TransientError as exc:
            raise SinkFatal(
                f"sink {self.sink}: no Entra ID token for {self.scope} from {self.how}: {exc}. "
                "With no key set, DefaultAzureCredential tries the environment (AZURE_TENANT_ID, AZURE_CLIENT_ID, "
                "AZURE_CLIENT_SECRET), workload identity, a managed identity and az login; or set "
                "managed_identity_client_id, or tenant_id + client_id + client_secret_file"
            ) from None

    def token(self) -> str:
        token = self._token
        if token is not None and time.time() < self._renew_at:
            return token
        with self._lock:
            if self._token is not None and time.time() < self._renew_at:
                return self._token
            try:
                return self._fetch()
            except TransientError as exc:
                left = self._expires_on - time.time()
                if self._token is not None and left > 30:
                    log.warning(
                        "Could not renew the Azure Monitor token; using the current one until it expires: "
                        "sink=%s expires_in_s=%d error=%s",
                        self.sink,
                        left,
                        exc,
                    )
                    return self._token
                raise

    def _fetch(self) -> str:
        from azure.core.exceptions import AzureError

        try:
            if hasattr(self.credential, "get_token_info"):
                got = self.credential.get_token_info(self.scope)
                refresh_on = getattr(got, "refresh_on", None)
            else:
                got = self.credential.get_token(self.scope)
                refresh_on = None
        except AzureError as exc:
            text = " ".join(str(getattr(exc, "message", None) or exc).split())
            raise TransientError(f"getting a token from {self.how} failed: {self._redact(text)[:400]}") from None
        self._token = str(got.token)
        self._expires_on = float(got.expires_on)
        self._renew_at = self._expires_on - RENEW_MARGIN_S
        if refresh_on:
            self._renew_at = min(self._renew_at, float(refresh_on))
        self.fetches += 1
        log.info(
            "Got an Azure Monitor token: sink=%s credential=%s scope=%s expires_in_s=%d renew_in_s=%d",
            self.sink,
            self.how,
            self.scope,
            self._expires_on - time.time(),
            self._renew_at - time.time(),
        )
        return self._token

    def close(self) -> None:
        self.credential.close()


def scope_for(audience: str) -> str:
    return audience.rstrip("/") + "/.default"


def credential_from(cfg: Mapping[str, Any], name: str, secret: str | None) -> tuple[Credential, str]:
    """The azure-identity credential the keys ask for (``secret``: client_secret, already read from its
    file), and how messages name it."""
    tenant = get_str(cfg, "tenant_id", name)
    client = get_str(cfg, "client_id", name)
    managed = get_str(cfg, "managed_identity_client_id", name)
    authority = get_str(cfg, "authority_host", name)
    for key, value in (("tenant_id", tenant), ("client_id", client), ("managed_identity_client_id", managed)):
        if value is not None and not _GUID.match(value):
            raise SinkConfigError(f"sink {name}: {key} must be a GUID, got {value!r}")
    if authority is not None and not authority.startswith("https://"):
        raise SinkConfigError(f"sink {name}: authority_host must be an https URL, got {authority!r}")
    options: dict[str, Any] = {"authority": authority} if authority else {}
    if secret is not None or tenant is not None or client is not None:
        if managed is not None:
            raise SinkConfigError(
                f"sink {name}: managed_identity_client_id and client_id/client_secret exclude each other"
            )
        missing = [k for k, v in (("tenant_id", tenant), ("client_id", client), ("client_secret", secret)) if v is None]
        if missing:
            raise SinkConfigError(
                f"sink {name}: an app registration needs tenant_id, client_id and client_secret "
                f"(or client_secret_file); missing {', '.join(missing)}"
            )
        from azure.identity import ClientSecretCredential

        assert tenant is not None and client is not None and secret is not None
        return ClientSecretCredential(tenant, client, secret, **options), f"client secret of app {client}"
    if managed is not None:
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=managed), f"managed identity {managed}"
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(**options), "DefaultAzureCredential"
