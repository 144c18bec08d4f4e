"""The Azure Blob source against a real Azurite: auth, discovery by hierarchy, start, ranged reads, retries."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.blob import ContainerClient, ContainerSasPermissions, generate_container_sas

from forwarder.samples.generator import HEAD, TAIL, BlobSpec, blob_bytes, sample_specs
from forwarder.sinks.retry import Interrupted
from forwarder.sources.azure_blob import AzureBlobSource, from_config
from forwarder.sources.base import BlobGone, SourceError
from tests.support.azure_faults import FaultProxy
from tests.support.azure_writer import AzureWriter
from tests.support.azurite import Azurite, azurite, free_port  # noqa: F401  (azurite is a fixture)

pytestmark = pytest.mark.azurite

HOUR = timedelta(hours=1)
NOW_HOUR = datetime(2026, 11, 25, 10, tzinfo=UTC)  # the last hour sample_specs() writes
RETENTION_DAYS = 30
RETAINED_RESOURCES = [("nsg", "WEB-NSG"), ("nsg", "LEGACY-NSG"), ("vnet", "VNET1-FLOWLOG")]


class Clock:
    """The source's idea of "now", moved by the test."""

    def __init__(self, t: datetime):
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def make_source(az: Azurite | FaultProxy, cc: ContainerClient, clock: Clock, **cfg: Any) -> AzureBlobSource:
    retry = {k: cfg.pop(k) for k in ("retry_initial", "retry_attempts", "stop") if k in cfg}
    base: dict[str, Any] = {"type": "azure_blob", "container": cc.container_name}
    base["connection_string"] = az.connection_string
    base.update(cfg)
    return from_config(base, now=clock, **retry)


@pytest.fixture(scope="module")
def retained(azurite: Azurite) -> Iterator[tuple[ContainerClient, list[BlobSpec]]]:  # noqa: F811
    """30 days of hourly blobs for two NSGs and a VNet flow log (tiny blobs: only listing matters here)."""
    cc = azurite.new_container("retained")
    specs = [
        BlobSpec(kind=kind, name=name, hour=NOW_HOUR - h * HOUR)  # type: ignore[arg-type]
        for h in range(RETENTION_DAYS * 24)
        for kind, name in RETAINED_RESOURCES
    ]
    assert azurite.upload_many(cc.container_name, ((s.blob_name, HEAD + TAIL) for s in specs)) == len(specs)
    yield cc, specs


@pytest.fixture
def estate(azurite: Azurite) -> tuple[ContainerClient, AzureWriter, list[BlobSpec]]:  # noqa: F811
    """Two hours (09:00, 10:00) of two NSGs (three NICs) and a VNet flow log, 5 minutes each, in a fresh container."""
    cc = azurite.new_container()
    writer = AzureWriter(cc)
    specs = [dataclasses.replace(s, minutes=5, tuples_per_minute=4) for s in sample_specs(hours=2)]
    for spec in specs:
        writer.write_all(spec)
    return cc, writer, specs


def names(refs: Any) -> set[str]:
    return {r.name for r in refs}


# -- auth and discovery -----------------------------------------------------------------------------


def test_discovers_every_nsg_and_vnet_flow_log_with_a_connection_string(
    azurite: Azurite,  # noqa: F811
    estate: tuple[ContainerClient, AzureWriter, list[BlobSpec]],
) -> None:
    cc, _, specs = estate
    source = make_source(azurite, cc, Clock(NOW_HOUR + timedelta(minutes=5)))
    try:
        refs = {r.name: r for r in source.discover()}
        assert set(refs) == {s.blob_name for s in specs}
        assert source.identity == f"devstoreaccount1/{cc.container_name}"
        assert len(source.prefixes) == 3  # WEB-NSG, LEGACY-NSG, VNET1-FLOWLOG
        assert any(p.startswith("flowLogResourceID=/") for p in source.prefixes)
        for spec in specs:
            props = cc.get_blob_client(spec.blob_name).get_blob_properties()
            ref = refs[spec.blob_name]
            assert ref.size == len(blob_bytes(spec)) == props.size
            assert ref.etag == props.etag.strip('"')
            assert ref.last_modified == props.last_modified
    finally:
        source.close()


def test_account_key_and_sas_token_work_and_bad_credentials_fail_without_leaking_them(
    azurite: Azurite,  # noqa: F811
    estate: tuple[ContainerClient, AzureWriter, list[BlobSpec]],
) -> None:
    cc, _, specs = estate
    clock = Clock(NOW_HOUR + timedelta(minutes=5))
    expected = {s.blob_name for s in specs}
    spec = specs[0]
    sas = generate_container_sas(
        azurite.account_name, cc.container_name, account_key=azurite.account_key,
        permission=ContainerSasPermissions(read=True, list=True), expiry=datetime.now(UTC) + timedelta(hours=1),
    )  # fmt: skip
    good = [
        {"account_url": azurite.account_url, "account_key": azurite.account_key},
        {"account_url": azurite.account_url, "sas_token": sas},
        {"account_url": azurite.account_url, "sas_token": "?" + sas},
    ]
    for auth in good:
        source = from_config({"type": "azure_blob", "container": cc.container_name, **auth}, now=clock)
        try:
            assert names(source.discover()) == expected
            assert source.read(spec.blob_name, 0, 12) == HEAD
        finally:
            source.close()

    wrong_key = "A" * 86 + "=="
    forged_sig = "Zm9yZ2VkLXNpZ25hdHVyZS12YWx1ZQ%3D%3D"
    forged_sas = sas.split("sig=")[0] + "sig=" + forged_sig
    bad = [
        ({"account_url": azurite.account_url, "account_key": wrong_key}, wrong_key),
        ({"account_url": azurite.account_url, "sas_token": forged_sas}, forged_sig),
        ({"connection_string": azurite.connection_string.replace(azurite.account_key, wrong_key)}, wrong_key),
    ]
    for auth, secret in bad:
        source = from_config({"type": "azure_blob", "container": cc.container_name, **auth}, now=clock)
        try:
            with pytest.raises(SourceError) as info:
                list(source.discover())
            assert "refused access" in str(info.value)
            assert "status=403" in str(info.value)
            assert secret not in str(info.value)
            assert info.value.__cause__ is None and info.value.__suppress_context__
            with pytest.raises(SourceError) as info:
                source.read(spec.blob_name, 0, 12)
            assert secret not in str(info.value)
        finally:
            source.close()


def test_missing_container_is_a_source_error(azurite: Azurite) -> None:  # noqa: F811
    cc = azurite.container_client("no-such-container", create=False)
    source = make_source(azurite, cc, Clock(NOW_HOUR))
    try:
        with pytest.raises(SourceError, match="container does not exist"):
            list(source.discover())
    finally:
        source.close()


# -- listing cost ------------------------------------------------------------------------------------


def test_steady_state_polls_list_only_the_live_hours_of_30_days_of_retention(
    azurite: Azurite,  # noqa: F811
    retained: tuple[ContainerClient, list[BlobSpec]],
) -> None:
    cc, specs = retained
    clock = Clock(NOW_HOUR + timedelta(minutes=30))
    source = make_source(azurite, cc, clock, start="earliest")
    try:
        backlog = list(source.discover())
        assert names(backlog) == {s.blob_name for s in specs}  # first run: the whole retention, once
        first_entries = source.entries_listed
        live = {s.blob_name for s in specs if s.hour == NOW_HOUR}
        for _ in range(3):
            before = source.requests
            refs = list(source.discover())
            assert names(refs) == live
            # One hour folder per resource: 3 entries and 3 requests, against 2160 blobs retained.
            assert source.entries_listed == len(live) == 3
            assert source.requests - before == len(RETAINED_RESOURCES)
        # Early in the hour the previous one is still live (late commits): twice as much, still tiny.
        clock.t = NOW_HOUR + timedelta(minutes=5)
        early = make_source(azurite, cc, clock, start="latest")
        try:
            refs = list(early.discover())
            assert names(refs) == {s.blob_name for s in specs if s.hour >= NOW_HOUR - HOUR}
            assert early.entries_listed <= 2 * len(live) + 40  # + the walk that finds the resources
            list(early.discover())
            assert early.entries_listed == 2 * len(live)
        finally:
            early.close()
        flat = sum(1 for _ in cc.list_blobs())
        print(
            f"\nlisting: retained={len(specs)} flat_listing_entries={flat} first_discover_entries={first_entries} "
            f"steady_state_entries={source.entries_listed}"
        )
        assert flat == len(specs)
        assert source.entries_listed * 100 < flat
    finally:
        source.close()


# -- start -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "first_hour"),
    [
        ("earliest", NOW_HOUR - (RETENTION_DAYS * 24 - 1) * HOUR),
        ("latest", NOW_HOUR),
        ("2026-11-25T07:20:00Z", datetime(2026, 11, 25, 7, tzinfo=UTC)),
        ("2026-11-25T09:20:00+02:00", datetime(2026, 11, 25, 7, tzinfo=UTC)),
        ("2026-11-20T23:59:00Z", datetime(2026, 11, 20, 23, tzinfo=UTC)),
        ("2026-11-25T12:00:00Z", None),  # in the future: nothing yet
    ],
)
def test_start_decides_which_hours_a_first_run_reads(
    azurite: Azurite,  # noqa: F811
    retained: tuple[ContainerClient, list[BlobSpec]],
    start: str,
    first_hour: datetime | None,
) -> None:
    cc, specs = retained
    source = make_source(azurite, cc, Clock(NOW_HOUR + timedelta(minutes=30)), start=start)
    try:
        refs = list(source.discover())
        expected = {s.blob_name for s in specs if first_hour is not None and s.hour >= first_hour}
        assert names(refs) == expected
        if start.startswith("2026-11-25T0"):
            # A few hours back: only that day's hour folders are walked, not the other 29 days.
            assert source.entries_listed < len(specs) / 10
    finally:
        source.close()


def test_backlog_lists_only_the_requested_range(
    azurite: Azurite,  # noqa: F811
    retained: tuple[ContainerClient, list[BlobSpec]],
) -> None:
    cc, specs = retained
    source = make_source(azurite, cc, Clock(NOW_HOUR + timedelta(minutes=30)))
    try:
        since, until = datetime(2026, 11, 10, 22, 30, tzinfo=UTC), datetime(2026, 11, 12, 3, tzinfo=UTC)
        refs = list(source.backlog(since, until))
        assert names(refs) == {s.blob_name for s in specs if datetime(2026, 11, 10, 22, tzinfo=UTC) <= s.hour < until}
        assert len(refs) == (2 + 24 + 3) * len(RETAINED_RESOURCES)
        assert source.entries_listed < 3 * len(refs)  # walked three days, not thirty
    finally:
        source.close()


# -- the live window -----------------------------------------------------------------------------------


def test_an_hour_stays_live_until_listed_after_its_grace_even_if_polls_stall(azurite: Azurite) -> None:  # noqa: F811
    cc = azurite.new_container()
    writer = AzureWriter(cc)
    hours = [NOW_HOUR + k * HOUR for k in range(-1, 4)]  # 09:00 .. 13:00
    specs = [BlobSpec(kind="nsg", name="WEB-NSG", hour=h, minutes=2, tuples_per_minute=2) for h in hours]
    for spec in specs:
        writer.start(spec)
    clock = Clock(NOW_HOUR + timedelta(minutes=5))
    source = make_source(azurite, cc, clock, start="latest", late_commit_grace=900)
    try:

        def listed_hours() -> list[int]:
            found = names(source.discover())
            return sorted({s.hour.hour for s in specs if s.blob_name in found})

        assert listed_hours() == [9, 10]  # 10:05: 09:00 can still get its last block
        clock.t = NOW_HOUR + timedelta(minutes=14)
        assert listed_hours() == [9, 10]
        clock.t = NOW_HOUR + timedelta(minutes=16)
        assert listed_hours() == [9, 10]  # listed once more after the grace: now final
        clock.t = NOW_HOUR + timedelta(minutes=17)
        assert listed_hours() == [10]
        # The process stalls for three hours: nothing in between is skipped.
        clock.t = NOW_HOUR + timedelta(hours=3, minutes=30)
        assert listed_hours() == [10, 11, 12, 13]
        assert listed_hours() == [13]
    finally:
        source.close()


def test_a_growing_blob_shows_new_sizes_and_etags_and_a_rewrite_shows_a_shorter_one(
    azurite: Azurite,  # noqa: F811
) -> None:
    cc = azurite.new_container()
    writer = AzureWriter(cc)
    spec = BlobSpec(kind="vnet", name="VNET1-FLOWLOG", mac="0022487BC205", hour=NOW_HOUR, minutes=4)
    other = BlobSpec(kind="nsg", name="WEB-NSG", hour=NOW_HOUR, minutes=4)
    writer.start(spec)
    writer.start(other)
    source = make_source(azurite, cc, Clock(NOW_HOUR + timedelta(minutes=20)))
    try:

        def ref_of(s: BlobSpec) -> Any:
            return next(r for r in source.discover() if r.name == s.blob_name)

        seen = ref_of(spec)
        assert seen.size == len(HEAD + TAIL)
        sizes = [seen.size]
        while writer.append_minute(spec):
            ref = ref_of(spec)
            assert ref.size > sizes[-1]
            assert ref.etag != seen.etag
            assert source.read(spec.blob_name, 0, ref.size) == writer.committed_bytes(spec)
            sizes.append(ref.size)
            seen = ref
        assert writer.blocks_committed[spec.blob_name] == 4
        assert source.read(spec.blob_name, 0, seen.size) == blob_bytes(spec)
        # Rewritten from scratch with other content and fewer blocks: shorter, new etag.
        rewritten = dataclasses.replace(spec, seed=99)
        writer.rewrite(rewritten, minutes=2)
        ref = ref_of(spec)
        assert ref.size < seen.size
        assert ref.etag != seen.etag
        assert source.read(spec.blob_name, 0, ref.size) == blob_bytes(dataclasses.replace(rewritten, minutes=2))
        assert ref_of(other).size == len(HEAD + TAIL)  # untouched neighbour
    finally:
        source.close()


def test_a_resource_that_appears_later_is_found_at_the_next_refresh(azurite: Azurite) -> None:  # noqa: F811
    cc = azurite.new_container()
    writer = AzureWriter(cc)
    first = BlobSpec(kind="nsg", name="WEB-NSG", hour=NOW_HOUR, minutes=1)
    writer.write_all(first)
    clock = Clock(NOW_HOUR + timedelta(minutes=50))
    source = make_source(azurite, cc, clock, start="latest", discovery_refresh=3600)
    try:
        assert names(source.discover()) == {first.blob_name}
        # A new NSG writes its first blob at 10:55; the resources are walked again only at 11:50.
        late = BlobSpec(kind="nsg", name="NEW-NSG", hour=NOW_HOUR, minutes=1)
        writer.write_all(late)
        clock.t = NOW_HOUR + timedelta(hours=1, minutes=20)
        assert names(source.discover()) == {first.blob_name}  # 10:00 listed a last time; NEW-NSG not known yet
        clock.t = NOW_HOUR + timedelta(hours=1, minutes=30)
        assert names(source.discover()) == set()  # only 11:00 is live now
        clock.t = NOW_HOUR + timedelta(hours=1, minutes=51)
        # The walk finds NEW-NSG, and its hours since the previous walk are listed even though 10:00 is final.
        assert names(source.discover()) == {late.blob_name}
        assert len(source.prefixes) == 2
        assert names(source.discover()) == set()
    finally:
        source.close()


# -- reads ------------------------------------------------------------------------------------------


def test_ranged_reads_return_exact_bytes(
    azurite: Azurite,  # noqa: F811
    estate: tuple[ContainerClient, AzureWriter, list[BlobSpec]],
) -> None:
    cc, _, specs = estate
    source = make_source(azurite, cc, Clock(NOW_HOUR))
    try:
        for spec in specs:
            data = blob_bytes(spec)
            size = len(data)
            for start, end in [(0, 12), (12, 500), (100, size - 2), (size - 2, size), (0, size), (7, 8)]:
                assert source.read(spec.blob_name, start, end) == data[start:end]
            assert source.read(spec.blob_name, size - 5, size + 1000) == data[-5:]  # shorter than asked
            assert source.read(spec.blob_name, size, size + 10) == b""
            assert source.read(spec.blob_name, size + 50, size + 60) == b""
            assert source.read(spec.blob_name, 30, 30) == b""
    finally:
        source.close()


def test_reading_a_deleted_blob_raises_blob_gone(
    azurite: Azurite,  # noqa: F811
    estate: tuple[ContainerClient, AzureWriter, list[BlobSpec]],
) -> None:
    cc, writer, specs = estate
    source = make_source(azurite, cc, Clock(NOW_HOUR + timedelta(minutes=5)))
    try:
        refs = names(source.discover())
        assert specs[0].blob_name in refs
        writer.delete(specs[0])
        with pytest.raises(BlobGone):
            source.read(specs[0].blob_name, 0, 100)
        assert specs[0].blob_name not in names(source.discover())
        assert source.read(specs[1].blob_name, 0, 12) == HEAD
    finally:
        source.close()


def test_throttling_is_retried_until_the_account_answers(
    azurite: Azurite,  # noqa: F811
    estate: tuple[ContainerClient, AzureWriter, list[BlobSpec]],
) -> None:
    cc, _, specs = estate
    proxy = FaultProxy(azurite)
    source = make_source(proxy, cc, Clock(NOW_HOUR + timedelta(minutes=5)), retry_initial=0.01)
    try:
        proxy.fail(3, status=503, code="ServerBusy")
        proxy.fail(1, status=429, code="TooManyRequests", headers={"Retry-After": "0"})
        proxy.fail(1, status=500, code="OperationTimedOut")
        assert names(source.discover()) == {s.blob_name for s in specs}
        proxy.fail(2, status=503, code="ServerBusy")
        data = blob_bytes(specs[0])
        assert source.read(specs[0].blob_name, 10, 400) == data[10:400]
        assert proxy.failed == 7
        assert source.retries == 7
        # Not everything is worth retrying: a 404 is an answer.
        proxy.fail(1, status=404, code="BlobNotFound")
        with pytest.raises(BlobGone):
            source.read(specs[0].blob_name, 0, 10)
        assert source.retries == 7
    finally:
        source.close()
        proxy.close()


def test_an_unreachable_account_is_retried_until_shutdown_interrupts_the_wait(
    azurite: Azurite,  # noqa: F811
) -> None:
    cc = azurite.container_client("unreachable", create=False)
    dead = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    stop = threading.Event()
    source = from_config(
        {"type": "azure_blob", "container": cc.container_name, "account_url": dead, "account_key": azurite.account_key},
        now=Clock(NOW_HOUR), stop=stop, retry_initial=0.05,
    )  # fmt: skip
    try:
        threading.Timer(1.0, stop.set).start()
        began = time.monotonic()
        with pytest.raises(Interrupted):
            source.read("x/PT1H.json", 0, 10)
        assert 0.9 < time.monotonic() - began < 5
        assert source.retries >= 3

        limited = from_config(
            {"type": "azure_blob", "container": "c", "account_url": dead, "account_key": azurite.account_key},
            now=Clock(NOW_HOUR), retry_initial=0.01, retry_attempts=3,
        )  # fmt: skip
        try:
            with pytest.raises(SourceError, match="gave up after 3 attempts") as info:
                list(limited.discover())
            assert azurite.account_key not in str(info.value)
        finally:
            limited.close()
    finally:
        source.close()
