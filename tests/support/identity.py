"""A local managed-identity endpoint of the App Service kind (IDENTITY_ENDPOINT and IDENTITY_HEADER), the
protocol azure-identity speaks on App Service and Azure Functions, issuing unsigned tokens with the claims
a receiver checks: issuer, audience, lifetime, and the object id of the identity."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

IDENTITY_HEADER = "identity-header-SECRET-8f9e"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
OBJECT_ID = "forwarder-test"


def fake_jwt(audience: str, lifetime: float = 3600, oid: str = OBJECT_ID) -> str:
    """An unsigned token with the claims Azurite and the Logs Ingestion receiver check."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"aud": audience, "iss": "https://sts.windows.net/00000000-0000-0000-0000-00000000abcd/",
              "iat": now - 60, "nbf": now - 60, "exp": now + int(lifetime), "oid": oid}  # fmt: skip
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJlLVNFQ1JFVA"


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a token made by fake_jwt (or any JWT), unverified."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


class IdentityEndpoint:
    """An App Service managed-identity endpoint: GET ?resource=...&api-version=2019-08-01 with X-IDENTITY-HEADER.

    ``audience`` None gives tokens for the resource asked for; ``lifetime`` sets how long they last.
    """

    def __init__(self, audience: str | None = "https://storage.azure.com", lifetime: float = 3600) -> None:
        self.audience = audience
        self.lifetime = lifetime
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
                resource = query.get("resource", [""])[0]
                token = fake_jwt(outer.audience or resource, outer.lifetime)
                outer.tokens.append(token)
                expires = str(int(time.time() + outer.lifetime))
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

    def __enter__(self) -> IdentityEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def identity_env(endpoint: IdentityEndpoint, base: dict[str, str] | None = None) -> dict[str, str]:
    """A process environment in which the managed identity is the only credential DefaultAzureCredential finds."""
    env = {k: v for k, v in (base or os.environ).items() if not k.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_"))}
    return {**env, "IDENTITY_ENDPOINT": endpoint.url, "IDENTITY_HEADER": IDENTITY_HEADER}
