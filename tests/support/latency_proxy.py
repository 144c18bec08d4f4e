"""A TCP proxy that delays what the client sends by a fixed time and counts HTTP requests.

Loopback hides the round trips that decide a forwarder's throughput: put this between the
forwarder and Azurite (or any HTTP peer) to give every request the latency of a storage account in
another region. Data is delayed, not throttled: each burst is forwarded ``delay`` seconds after it
arrived, so pipelined and concurrent requests overlap as they would over a long link.

    proxy = LatencyProxy("127.0.0.1", azurite.port, delay=0.020).start()
    ... connect to 127.0.0.1:proxy.port ...
    proxy.requests   # HTTP/1.1 requests seen so far
    proxy.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

_REQUEST_LINE_END = b" HTTP/1.1\r\n"


class LatencyProxy:
    def __init__(self, host: str, port: int, delay: float):
        self.target = (host, port)
        self.delay = delay
        self.requests = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="latency-proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> LatencyProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the latency proxy did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer, self.delay, count=True),
            self._pipe(up_reader, writer, 0.0, count=False),
            return_exceptions=True,
        )

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float, count: bool) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def forward() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                dst.write(data)
                await dst.drain()

        sender = asyncio.ensure_future(forward())
        carry = b""
        try:
            while True:
                data = await src.read(1 << 16)
                if count and data:
                    # A request line split between two reads is found by keeping the end of the previous one.
                    window = carry + data
                    self.requests += window.count(_REQUEST_LINE_END)
                    carry = data[-(len(_REQUEST_LINE_END) - 1) :]
                await queue.put((time.monotonic() + delay, data))
                if not data:
                    break
            await sender
        except (ConnectionError, OSError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(Exception):
                dst.close()
