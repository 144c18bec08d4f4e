"""Flow-log blobs in Azure Blob Storage, discovered by hierarchy instead of listing the container.

A container with a year of retention holds millions of blobs, and only a handful can still change:
the current hour's and, for a few minutes after the hour, the previous hour's. So discovery

1. walks the folder levels once (``walk_blobs`` with ``/`` as delimiter) to find the *resource
   prefixes*, one per NSG or flow log, and walks them again every ``discovery_refresh`` seconds;
2. on every poll lists only ``{prefix}y=YYYY/m=MM/d=DD/h=HH/`` for the hours that are not yet
   final: an hour is final once it has been listed at least ``late_commit_grace`` after it
   ended (Azure commits the last block a few minutes late). An hour stays on the list until
   that final listing happened, so a stalled process never skips one;
3. on the first poll only, lists the backlog from ``start`` up to those live hours by walking
   ``y=`` / ``m=`` / ``d=`` under each prefix: one listing per whole day in range, one per hour
   folder on the partial days at the edges.

``entries_listed`` and ``requests`` make the cost visible to the listing benchmark and metrics.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import requests
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobPrefix, ContainerClient
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from forwarder.probe import Unreachable
from forwarder.sources import blobpath
from forwarder.sources.azure_auth import Connection, Scrubber, connect
from forwarder.sources.azure_retry import StorageRequestFailed, StorageRetry
from forwarder.sources.base import BlobRef, SourceError
from forwarder.sources.blobpath import HOUR, LAYOUT_ROOTS
from forwarder.sources.start import Start, parse_start

log = logging.getLogger("forwarder.source.azure")

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_DISCOVERY_REFRESH = 600.0
DEFAULT_LATE_COMMIT_GRACE = 900.0
DEFAULT_MAX_CONCURRENCY = 8
_MAX_DEPTH = 16  # resource prefixes are 9 levels deep for NSGs, 2 for flow logs
_DAY = timedelta(days=1)

CONFIG_KEYS = frozenset(
    {
        "type", "container", "connection_string", "account_url", "account_name", "account_key", "sas_token",
        "start", "poll_interval", "api_version", "discovery_refresh", "late_commit_grace", "max_concurrency",
        "tls_ca_file", "managed_identity_client_id",
    }
)  # fmt: skip


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AzureBlobSource:
    """A ``BlobSource`` over one storage container. Thread-safe for concurrent ``read`` calls."""

    def __init__(
        self,
        client: ContainerClient,
        account_name: str,
        *,
        start: Start = "earliest",
        discovery_refresh: float = DEFAULT_DISCOVERY_REFRESH,
        late_commit_grace: float = DEFAULT_LATE_COMMIT_GRACE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        now: Callable[[], datetime] = _utcnow,
        stop: threading.Event | None = None,
        scrub: Scrubber | None = None,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        retry_attempts: int = 0,
        auth_method: str = "",
        on_close: Callable[[], None] | None = None,
    ):
        """Normally built by ``from_config``, which also wires ``count_request`` into the client's pipeline.

        ``now`` is the clock that decides which hours are live (tests inject one); ``stop`` ends retry waits.
        """
        self.client = client
        self.container = client.container_name
        self.account_name = account_name
        self.identity = f"{account_name}/{self.container}"
        self.start = start
        self.discovery_refresh = discovery_refresh
        self.late_commit_grace = timedelta(seconds=late_commit_grace)
        self.max_concurrency = max(1, max_concurrency)
        self.now = now
        self.scrub = scrub or Scrubber()
        hint = ""
        if auth_method == "default_credential":
            hint = " hint='the identity needs the Storage Blob Data Reader role on the container'"
        self.retry = StorageRetry(
            self.identity, self.scrub, stop=stop, initial=retry_initial, maximum=retry_max,
            max_attempts=retry_attempts, auth_hint=hint,
        )  # fmt: skip
        self.entries_listed = 0  # entries returned by listings during the last discover() / backlog()
        self.entries_listed_total = 0
        self.requests = 0  # storage requests sent (every attempt), since creation
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._on_close = on_close
        self._prefixes: list[str] = []
        self._prefixes_at: datetime | None = None
        self._start_floor: datetime | None = None  # resolved on the first discover(); None = earliest
        self._pending_from: datetime | None = None  # oldest hour not yet listed after it became final
        self._backlog_due: dict[str, datetime] = {}  # resources found after the first poll -> hour to list from

    # -- counters -------------------------------------------------------------------------------

    def count_request(self, _request: object = None) -> None:
        """Pipeline hook: one storage request is about to be sent."""
        with self._lock:
            self.requests += 1

    def _count_entries(self, n: int) -> None:
        with self._lock:
            self.entries_listed += n
            self.entries_listed_total += n

    @property
    def retries(self) -> int:
        """Storage requests retried after a transient failure (throttling, timeouts), since creation."""
        return self.retry.retries

    @property
    def prefixes(self) -> list[str]:
        """The resource prefixes (one per NSG / flow log) found by the last walk."""
        return list(self._prefixes)

    # -- listing primitives ---------------------------------------------------------------------

    def _children(self, prefix: str) -> list[str]:
        """The sub-folders one level below prefix (blobs at that level are ignored)."""

        def walk() -> list[str]:
            items = list(self.client.walk_blobs(name_starts_with=prefix, delimiter="/"))
            self._count_entries(len(items))
            return [item.name for item in items if isinstance(item, BlobPrefix)]

        return self.retry.call(walk, f"list folders under {prefix}")

    def _list(self, prefix: str, since: datetime | None = None, until: datetime | None = None) -> list[BlobRef]:
        """Flow-log blobs under prefix (whose hour is within [since, until) when given)."""

        def listing() -> list[BlobRef]:
            refs: list[BlobRef] = []
            n = 0
            for props in self.client.list_blobs(name_starts_with=prefix):
                n += 1
                path = blobpath.parse(props.name)
                if path is None:
                    continue
                if (since is not None and path.hour < since) or (until is not None and path.hour >= until):
                    continue
                # Listings give the etag bare, blob properties quoted: keep one form so comparisons hold.
                etag = str(props.etag).strip('"')
                refs.append(BlobRef(props.name, int(props.size), etag, props.last_modified))
            self._count_entries(n)
            return refs

        return self.retry.call(listing, f"list blobs under {prefix}")

    def _time_children(self, parent: str, key: str) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for child in self._children(parent):
            seg = blobpath.segment(parent, child)
            if seg is not None and seg[0] == key:
                out.append((child, seg[1]))
        return sorted(out)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="azure-list")
        return self._pool

    def _ordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """fn over items with up to max_concurrency calls in flight, results in item order."""
        if self.max_concurrency == 1 or len(items) <= 1:
            for item in items:
                yield fn(item)
            return
        pool = self._executor()
        inflight: list[Future[R]] = []
        it = iter(items)
        for item in it:
            inflight.append(pool.submit(fn, item))
            if len(inflight) >= self.max_concurrency:
                break
        while inflight:
            result = inflight.pop(0).result()
            nxt = next(it, None)
            if nxt is not None:
                inflight.append(pool.submit(fn, nxt))
            yield result

    # -- resource prefixes ----------------------------------------------------------------------

    def refresh(self) -> list[str]:
        """Walk the folder levels again to find every NSG / flow log; returns the prefixes not seen before."""
        found: list[str] = []
        frontier = list(LAYOUT_ROOTS)
        depth = 0
        while frontier and depth < _MAX_DEPTH:
            nxt: list[str] = []
            for parent, children in zip(frontier, self._ordered(self._children, frontier), strict=True):
                if any(blobpath.is_time_level(parent, c) for c in children):
                    found.append(parent)
                else:
                    nxt.extend(children)
            frontier = nxt
            depth += 1
        found.sort()
        new = sorted(set(found) - set(self._prefixes))
        if self._pending_from is not None and self._prefixes_at is not None:
            # A resource that appeared since the last walk may have written an hour that is final by now:
            # the next discover() lists its hours since then once.
            since = blobpath.floor_hour(self._prefixes_at) - HOUR
            if self._start_floor is not None:
                since = max(since, self._start_floor)
            for prefix in new:
                self._backlog_due.setdefault(prefix, since)
        if new or len(found) != len(self._prefixes):
            log.info(
                "Found flow-log resources in the container: source=%s resources=%d new=%d",
                self.identity, len(found), len(new),
            )  # fmt: skip
        self._prefixes = found
        self._prefixes_at = self.now()
        return new

    def _refresh_due(self, now: datetime) -> bool:
        if self._prefixes_at is None:
            return True
        age = (now - self._prefixes_at).total_seconds()
        return age >= self.discovery_refresh or age < 0

    # -- backlog --------------------------------------------------------------------------------

    def _backlog_prefix(self, prefix: str, since: datetime | None, until: datetime) -> list[BlobRef]:
        """Blobs of one resource whose hour is in [since, until), walking only the folders in range."""
        last = until - HOUR
        if since is not None and since > last:
            return []
        refs: list[BlobRef] = []
        lo = since or datetime.min.replace(tzinfo=UTC)
        for yp, y in self._time_children(prefix, "y"):
            if not lo.year <= y <= last.year:
                continue
            for mp, m in self._time_children(yp, "m"):
                if not (lo.year, lo.month) <= (y, m) <= (last.year, last.month):
                    continue
                for dp, d in self._time_children(mp, "d"):
                    try:
                        day = datetime(y, m, d, tzinfo=UTC)
                    except ValueError:
                        continue
                    if day + _DAY <= lo or day > last:
                        continue
                    if lo <= day and day + _DAY <= until:
                        refs.extend(self._list(dp, since, until))
                        continue
                    # A partial day (the edges of the range): its hour folders are known, list just those.
                    hour = max(day, lo)
                    while hour <= last and hour < day + _DAY:
                        refs.extend(self._list(blobpath.hour_prefix(prefix, hour)))
                        hour += HOUR
        return refs

    def _backlog(self, prefixes: Sequence[str], since: datetime | None, until: datetime) -> Iterator[BlobRef]:
        for refs in self._ordered(lambda p: self._backlog_prefix(p, since, until), prefixes):
            yield from refs

    def backlog(self, since: datetime, until: datetime) -> Iterator[BlobRef]:
        """Every blob whose hour is in [floor(since), until), for an explicit backfill; independent of discover()."""
        lo, hi = blobpath.floor_hour(since), blobpath.floor_hour(until)
        if until > hi:
            hi += HOUR  # a partial last hour counts
        with self._lock:
            self.entries_listed = 0
        if self._prefixes_at is None or self._refresh_due(self.now()):
            self.refresh()
        yield from self._backlog(self._prefixes, lo, hi)

    # -- discovery ------------------------------------------------------------------------------

    def _final(self, hour: datetime, listed_at: datetime) -> bool:
        return listed_at >= hour + HOUR + self.late_commit_grace

    def _resolve_start(self, live_from: datetime) -> datetime | None:
        if self.start == "earliest":
            return None
        if self.start == "latest":
            return live_from
        if isinstance(self.start, datetime):
            return blobpath.floor_hour(self.start)
        raise ValueError(f"source.start must be 'earliest', 'latest' or a time, not {self.start!r}")

    def discover(self) -> Iterator[BlobRef]:
        """Blobs that may hold data not yet read (see the module docstring for which ones)."""
        now = self.now()
        with self._lock:
            self.entries_listed = 0
        if self._refresh_due(now):
            self.refresh()
        current = blobpath.floor_hour(now)
        if self._pending_from is None:
            live_from = current - HOUR if not self._final(current - HOUR, now) else current
            self._start_floor = self._resolve_start(live_from)
            pending = live_from if self._start_floor is None else max(live_from, self._start_floor)
            if self._start_floor is None or self._start_floor < pending:
                log.info(
                    "Listing the backlog once: source=%s since=%s until=%s resources=%d",
                    self.identity, self._start_floor.isoformat() if self._start_floor else "earliest",
                    pending.isoformat(), len(self._prefixes),
                )  # fmt: skip
                yield from self._backlog(self._prefixes, self._start_floor, pending)
        else:
            pending = self._pending_from
            if self._backlog_due:
                due = sorted(self._backlog_due.items())
                for refs in self._ordered(lambda ps: self._backlog_prefix(ps[0], ps[1], pending), due):
                    yield from refs
                for prefix, _ in due:
                    self._backlog_due.pop(prefix, None)
        hours: list[datetime] = []
        h = pending
        while h <= current:
            hours.append(h)
            h += HOUR
        work = [(hour, prefix) for hour in hours for prefix in self._prefixes]
        for refs in self._ordered(lambda hp: self._list(blobpath.hour_prefix(hp[1], hp[0])), work):
            yield from refs
        self._pending_from = next((h for h in hours if not self._final(h, now)), pending)

    # -- validate --connect ---------------------------------------------------------------------

    def probe(self) -> str:
        """List one page (one blob) of the container: one request, no retries, nothing read."""
        once = StorageRetry(self.identity, self.scrub, max_attempts=1, auth_hint=self.retry.auth_hint)

        def first_page() -> list[str]:
            pages = self.client.list_blobs(results_per_page=1).by_page()
            return [blob.name for blob in next(pages, [])]

        try:
            names = once.call(first_page, "list one page of the container")
        except (SourceError, StorageRequestFailed) as exc:
            raise Unreachable(str(exc)) from None
        where = f"container {self.container} of storage account {self.account_name}"
        return f"listed the {where}" if names else f"the {where} answered and is empty (no flow logs written yet)"

    # -- reading --------------------------------------------------------------------------------

    def read(self, name: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the blob in one ranged GET; fewer if it is shorter now. BlobGone if deleted."""
        if end <= start:
            return b""
        blob = self.client.get_blob_client(name)

        def download() -> bytes:
            try:
                data: bytes = blob.download_blob(offset=start, length=end - start).readall()
            except HttpResponseError as exc:
                if exc.status_code == 416:  # start is at or past the end: the blob is shorter now
                    return b""
                raise
            return data

        return self.retry.call(download, f"read {name} [{start}, {end})", blob=name)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self.client.close()
        if self._on_close is not None:
            self._on_close()


def _number(cfg: Mapping[str, Any], key: str, default: float, minimum: float) -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ValueError(f"source.{key} must be a number >= {minimum}: {value!r}")
    return float(value)


def from_config(
    cfg: Mapping[str, Any],
    *,
    now: Callable[[], datetime] = _utcnow,
    stop: threading.Event | None = None,
    retry_initial: float = 0.5,
    retry_max: float = 30.0,
    retry_attempts: int = 0,
    readers: int = 32,
) -> AzureBlobSource:
    """An AzureBlobSource from the ``[source]`` table. Raises ValueError (naming the key, no secret) if unusable.

    ``stop`` ends retry waits at once (they raise ``Interrupted``); ``retry_attempts`` 0 retries a throttled or
    unreachable account for as long as it takes. ``readers``: blobs the pipeline reads at once, which with the
    listings sets how many connections to storage are kept open for reuse.
    """
    unknown = sorted(set(cfg) - CONFIG_KEYS)
    if unknown:
        raise ValueError(f"source: unknown key(s) for type azure_blob: {', '.join('source.' + k for k in unknown)}")
    if cfg.get("type", "azure_blob") != "azure_blob":
        raise ValueError(f"source.type must be 'azure_blob' for this source: {cfg.get('type')!r}")
    container = cfg.get("container")
    if not isinstance(container, str) or not container:
        raise ValueError("source.container is required (e.g. insights-logs-networksecuritygroupflowevent)")
    start = parse_start(cfg.get("start", "earliest"))
    refresh = _number(cfg, "discovery_refresh", DEFAULT_DISCOVERY_REFRESH, 1)
    grace = _number(cfg, "late_commit_grace", DEFAULT_LATE_COMMIT_GRACE, 0)
    concurrency = int(_number(cfg, "max_concurrency", DEFAULT_MAX_CONCURRENCY, 1))
    counter = _RequestCounter()
    options: dict[str, Any] = {
        "retry_total": 0,  # StorageRetry decides; two layers of retries would multiply the waits
        "connection_timeout": 20,
        "read_timeout": 120,
        "raw_request_hook": counter,
        "session": pooled_session(readers + concurrency + 2),
    }
    conn: Connection = connect(cfg, container, options)
    source = AzureBlobSource(
        conn.client, conn.account_name, start=start, discovery_refresh=refresh, late_commit_grace=grace,
        max_concurrency=concurrency, now=now, stop=stop, scrub=conn.scrub, auth_method=conn.method,
        on_close=conn.close_credential, retry_initial=retry_initial, retry_max=retry_max, retry_attempts=retry_attempts,
    )  # fmt: skip
    counter.target = source
    log.info(
        "Azure blob source ready: source=%s auth=%s start=%s",
        source.identity, conn.method, start if isinstance(start, str) else start.isoformat(),
    )  # fmt: skip
    return source


class _PooledAdapter(HTTPAdapter):
    """Bigger socket reads than http.client's 8 KiB, as azure-core's own adapter does for blob downloads."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["blocksize"] = 1 << 16
        super().init_poolmanager(*args, **kwargs)


def pooled_session(connections: int) -> requests.Session:
    """A requests session that keeps ``connections`` connections per host for reuse. azure-core's default keeps
    10, so with more readers than that every request beyond them opens (and drops) a TLS connection of its own."""
    session = requests.Session()
    adapter = _PooledAdapter(
        pool_connections=4,
        pool_maxsize=connections,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),  # StorageRetry decides
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class _RequestCounter:
    """The client exists before the source does; this forwards the pipeline's request hook to it."""

    def __init__(self) -> None:
        self.target: AzureBlobSource | None = None

    def __call__(self, request: object) -> None:
        if self.target is not None:
            self.target.count_request(request)
