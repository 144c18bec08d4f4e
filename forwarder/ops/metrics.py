"""Prometheus metrics, /healthz and /readyz, read from the service's own counters at scrape time.

A custom collector keeps the hot path free of metric calls: the pipeline only bumps plain
integers it keeps anyway, and a scrape turns them into metric families.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from forwarder.pipeline.service import Service

log = logging.getLogger("forwarder.metrics")
P = "nsg_forwarder_"


class ServiceCollector(Collector):
    def __init__(self, service: Service):
        self.service = service

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        svc = self.service
        s = svc.stats
        now = time.time()
        yield CounterMetricFamily(
            P + "tuples_read", "Flow tuples turned into events and delivered.", value=s.events_delivered
        )
        yield CounterMetricFamily(P + "polls", "Discovery polls completed.", value=s.polls)
        yield CounterMetricFamily(
            P + "bytes_downloaded", "Bytes read from storage (blob data and probes).", value=svc.reader.bytes_read
        )
        requests = getattr(svc.source, "requests", None)
        if requests is not None:
            yield CounterMetricFamily(P + "storage_requests", "Requests made to the storage service.", value=requests)
        yield CounterMetricFamily(P + "blob_errors", "Blob reads that failed and will be retried.", value=s.blob_errors)
        skipped = CounterMetricFamily(P + "input_skipped", "Bad input skipped, by reason.", labels=["reason"])
        for reason, n in svc.issues.counts.items():
            skipped.add_metric([reason], n)
        yield skipped
        delivered = CounterMetricFamily(P + "events_delivered", "Events confirmed by a sink.", labels=["sink"])
        batches = CounterMetricFamily(P + "batches_delivered", "Batches confirmed by a sink.", labels=["sink"])
        queued = GaugeMetricFamily(P + "sink_queue_events", "Events formatted and waiting for a sink.", labels=["sink"])
        in_flight = GaugeMetricFamily(P + "sink_batches_in_flight", "Batches being sent to a sink.", labels=["sink"])
        batch_size = GaugeMetricFamily(
            P + "sink_batch_events", "Events in the last batch a sink confirmed.", labels=["sink"]
        )
        for name, c in svc.delivery.stats.items():
            delivered.add_metric([name], c.events)
            batches.add_metric([name], c.batches)
            queued.add_metric([name], c.queued_events)
            in_flight.add_metric([name], c.in_flight)
            batch_size.add_metric([name], c.last_batch_events)
        yield delivered
        yield batches
        yield queued
        yield in_flight
        yield batch_size
        filtered = CounterMetricFamily(
            P + "filtered",
            "Tuples a sink's filter dropped (they count as delivered), by reason.",
            labels=["sink", "reason"],
        )
        for (sink, reason), n in svc.delivery.filtered.items():
            filtered.add_metric([sink, reason], n)
        yield filtered
        aggregates = CounterMetricFamily(P + "aggregates", "Aggregates a sink was given.", labels=["sink"])
        for sink, n in svc.delivery.aggregated.items():
            aggregates.add_metric([sink], n)
        yield aggregates
        yield GaugeMetricFamily(
            P + "open_windows", "Aggregation windows open (their chunks wait for them to close).",
            value=svc.delivery.open_windows(),
        )  # fmt: skip
        yield GaugeMetricFamily(P + "blobs_reading", "Blobs being read now.", value=s.reading)
        yield GaugeMetricFamily(
            P + "blobs_in_flight", "Blobs with chunks read but not yet confirmed.", value=svc.tracker.blobs_in_flight
        )
        yield GaugeMetricFamily(
            P + "bytes_in_flight", "Bytes held by the pipeline (read, formatted, unconfirmed).", value=svc.budget.used
        )
        yield GaugeMetricFamily(
            P + "poll_seconds", "How long the last poll took (over 60 s: falling behind).", value=s.last_poll_seconds
        )
        dead = CounterMetricFamily(P + "events_dead_lettered", "Events a sink rejected for good.", labels=["sink"])
        for name, n in svc.delivery.dead_lettered().items():
            dead.add_metric([name], n)
        yield dead
        retries = CounterMetricFamily(P + "sink_retries", "Transient sink failures retried.", labels=["sink"])
        for name, n in svc.delivery.retries.items():
            retries.add_metric([name], n)
        yield retries
        up = GaugeMetricFamily(P + "sink_up", "1 if the sink's last delivery succeeded.", labels=["sink"])
        for name, ok in svc.delivery.healthy.items():
            up.add_metric([name], 1.0 if ok else 0.0)
        yield up
        lag = (now - s.newest_flow_ms / 1000) if s.newest_flow_ms else float("nan")
        yield GaugeMetricFamily(P + "lag_seconds", "Now minus the time of the newest delivered flow.", value=lag)
        age = now - svc.store.saved_at if svc.store.saved_at else float("nan")
        yield GaugeMetricFamily(P + "checkpoint_age_seconds", "Seconds since the checkpoint file was saved.", value=age)
        yield GaugeMetricFamily(P + "last_poll_timestamp_seconds", "When the last poll ended.", value=s.last_poll_end)


class MetricsListenError(Exception):
    """The metrics address cannot be bound (in use, not local, not permitted)."""


LISTEN_FORMS = 'host:port such as 127.0.0.1:9108, 0.0.0.0:9108 or [::1]:9108 (port 1-65535), or "" for off'


def parse_listen(listen: str) -> tuple[str, int]:
    """``[metrics] listen`` as (host, port): ``host:port``, ``[IPv6]:port``, or ``:port`` for every interface.

    Raises ValueError naming the key and the accepted forms: caught by the config loader, so that
    ``validate`` refuses what ``run`` could not bind.
    """
    host, sep, port = listen.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    valid_host = not any(c.isspace() or c in "[]/" for c in host) and (":" not in host or listen.strip()[0] == "[")
    if not sep or not port.isdigit() or not valid_host:
        raise ValueError(f"metrics.listen: expected {LISTEN_FORMS}, got {listen!r}")
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError(f"metrics.listen: the port must be between 1 and 65535, got {number} in {listen!r}")
    return host or "0.0.0.0", number


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class HealthServer:
    """Serves /metrics, /healthz (the loop is alive) and /readyz (source and sinks reachable)."""

    def __init__(self, service: Service, listen: str, stale_after: float):
        try:
            host, port = parse_listen(listen)
        except ValueError as exc:
            raise MetricsListenError(str(exc)) from None
        self.service = service
        self.stale_after = stale_after
        self.registry = CollectorRegistry()
        self.registry.register(ServiceCollector(service))
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/metrics":
                    self._reply(200, generate_latest(outer.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok, why = outer.alive()
                    self._reply(200 if ok else 503, why.encode() + b"\n", "text/plain")
                elif path == "/readyz":
                    ok, why = outer.ready()
                    self._reply(200 if ok else 503, why.encode() + b"\n", "text/plain")
                else:
                    self._reply(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

            def _reply(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the log

        try:
            server = _IPv6Server if ":" in host else ThreadingHTTPServer
            self.httpd = server((host, port), Handler)
        except OSError as exc:
            why = exc.strerror or exc
            raise MetricsListenError(f"metrics.listen = {listen!r}: cannot listen there: {why}") from exc
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="health", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("Serving metrics and health checks: address=%s:%d", self.httpd.server_address[0], self.port)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def alive(self) -> tuple[bool, str]:
        beat = self.service.last_alive
        if time.monotonic() - beat > self.stale_after:
            return False, f"stalled: the main loop has not moved for {time.monotonic() - beat:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        svc = self.service
        if svc.stats.polls == 0:
            return False, "starting: no poll finished yet"
        if svc.last_poll_error:
            return False, f"source unavailable: {svc.last_poll_error}"
        if svc.checkpoint_error:
            return False, f"checkpoints not saved: {svc.checkpoint_error}"
        down = [name for name, ok in svc.delivery.healthy.items() if not ok]
        if down:
            return False, "sinks failing: " + ", ".join(down)
        if svc.behind:
            return False, (
                f"falling behind: a poll takes {svc.behind + 60:.0f}s, more than the minute between Azure's commits; "
                "raise [reader] concurrency or add shards"
            )
        return True, "ok"
