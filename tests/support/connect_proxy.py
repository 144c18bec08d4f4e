"""A forward proxy that only tunnels (HTTP CONNECT), as corporate egress proxies do for https.

It records every CONNECT target and its Proxy-Authorization header, and answers 407 when ``auth``
("user:password") is set and the client did not send it.
"""

from __future__ import annotations

import base64
import select
import socket
import socketserver
import threading
from types import TracebackType


class ConnectProxy:
    def __init__(self, auth: str | None = None) -> None:
        self.auth = auth
        self.connects: list[str] = []
        self.authorizations: list[str | None] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                request = self.rfile.readline().decode("latin-1").split()
                headers: dict[str, str] = {}
                while (line := self.rfile.readline().decode("latin-1").strip()) != "":
                    key, _, value = line.partition(":")
                    headers[key.strip().lower()] = value.strip()
                if len(request) != 3 or request[0] != "CONNECT":
                    self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                    return
                outer.connects.append(request[1])
                given = headers.get("proxy-authorization")
                outer.authorizations.append(given)
                if outer.auth and given != "Basic " + base64.b64encode(outer.auth.encode()).decode():
                    self.wfile.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                    return
                host, _, port = request[1].rpartition(":")
                try:
                    upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
                except OSError:
                    self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    return
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.wfile.flush()
                self._pipe(self.connection, upstream)

            @staticmethod
            def _pipe(a: socket.socket, b: socket.socket) -> None:
                with b:
                    while True:
                        ready, _, _ = select.select([a, b], [], [], 30)
                        if not ready:
                            return
                        for src in ready:
                            data = src.recv(65536)
                            if not data:
                                return
                            (b if src is a else a).sendall(data)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def url(self, credentials: str | None = None) -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    def __enter__(self) -> ConnectProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
