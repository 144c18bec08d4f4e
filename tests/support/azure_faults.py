"""An HTTP proxy in front of Azurite that answers chosen requests the way a throttled account does.

    proxy = FaultProxy(azurite)            # forwards everything to Azurite
    proxy.fail(3)                          # the next 3 requests get 503 ServerBusy
    proxy.fail(1, status=429, code="TooManyRequests", headers={"Retry-After": "0"})
    cfg = {"connection_string": proxy.connection_string, ...}
    proxy.close()

Shared Key signatures do not cover the host, so clients signed for Azurite work through the proxy.
"""

from __future__ import annotations

import http.client
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.azurite import Azurite

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class FaultProxy:
    def __init__(self, azurite: Azurite):
        self.azurite = azurite
        self.forwarded = 0
        self.failed = 0
        self._faults: deque[tuple[int, str, dict[str, str]]] = deque()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._next_fault()
                if fault is not None:
                    status, code, headers = fault
                    payload = (
                        f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
                        f"<Message>Injected by the test proxy.</Message></Error>"
                    ).encode()
                    self.send_response(status)
                    self.send_header("x-ms-error-code", code)
                    self.send_header("Content-Type", "application/xml")
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(proxy.azurite.host, proxy.azurite.port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "host")}
                    headers["Host"] = f"{proxy.azurite.host}:{proxy.azurite.port}"
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    resp = upstream.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP_HEADERS:
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()
                with proxy._lock:
                    proxy.forwarded += 1

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    def _next_fault(self) -> tuple[int, str, dict[str, str]] | None:
        with self._lock:
            if not self._faults:
                return None
            self.failed += 1
            return self._faults.popleft()

    def fail(
        self, count: int, status: int = 503, code: str = "ServerBusy", headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next ``count`` requests with ``status`` / ``code`` instead of forwarding them."""
        with self._lock:
            for _ in range(count):
                self._faults.append((status, code, dict(headers or {})))

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.azurite.account_name}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.azurite.account_name};"
            f"AccountKey={self.azurite.account_key};BlobEndpoint={self.account_url};"
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
