"""Blob-name parsing, secret scrubbing and [source] validation for the Azure source (no emulator needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from forwarder.samples.generator import sample_specs
from forwarder.sources import blobpath
from forwarder.sources.azure_auth import Scrubber, account_name_from_url
from forwarder.sources.azure_blob import from_config, parse_start


def test_parses_every_generated_name_into_prefix_hour_and_mac() -> None:
    specs = sample_specs(hours=2)
    for spec in specs:
        path = blobpath.parse(spec.blob_name)
        assert path is not None, spec.blob_name
        assert path.hour == spec.hour
        assert path.mac == spec.mac
        assert path.kind == spec.kind
        assert spec.blob_name.startswith(path.hour_prefix)
        assert path.hour_prefix == path.prefix + f"y=2026/m=11/d=25/h={spec.hour.hour:02d}/"
    nsg = blobpath.parse(specs[0].blob_name)
    assert nsg is not None
    assert nsg.prefix == (
        "resourceId=/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/FABRIKAMRG"
        "/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/WEB-NSG/"
    )
    vnet = blobpath.parse(specs[3].blob_name)
    assert vnet is not None
    assert vnet.prefix == (
        "flowLogResourceID=/00000000-0000-0000-0000-000000000000_NETWORKWATCHERRG/NETWORKWATCHER_EASTUS_VNET1-FLOWLOG/"
    )


@pytest.mark.parametrize(
    "name",
    [
        "resourceId=/SUBSCRIPTIONS/S/y=2026/m=11/d=25/h=10/m=00/macAddress=AA/PT1H.json.tmp",
        "resourceId=/SUBSCRIPTIONS/S/y=2026/m=13/d=25/h=10/m=00/macAddress=AA/PT1H.json",  # month 13
        "resourceId=/SUBSCRIPTIONS/S/y=2026/m=02/d=30/h=10/m=00/macAddress=AA/PT1H.json",  # 30 February
        "other/SUBSCRIPTIONS/S/y=2026/m=11/d=25/h=10/m=00/macAddress=AA/PT1H.json",
        "resourceId=/y=2026/m=11/d=25/h=10/m=00/macAddress=AA/PT1H.json",  # no resource part
        "resourceId=/SUBSCRIPTIONS/S/y=2026/m=11/d=25/h=10/PT1H.json",
    ],
)
def test_rejects_names_not_laid_out_like_flow_logs(name: str) -> None:
    assert blobpath.parse(name) is None


def test_time_levels() -> None:
    p = "resourceId=/A/B/"
    assert blobpath.segment(p, p + "y=2026/") == ("y", 2026)
    assert blobpath.segment(p + "y=2026/", p + "y=2026/m=03/") == ("m", 3)
    assert blobpath.segment(p, p + "SUBSCRIPTIONS/") is None
    assert blobpath.is_time_level(p, p + "y=2026/")
    assert not blobpath.is_time_level(p, p + "h=10/")
    assert blobpath.floor_hour(datetime(2026, 11, 25, 10, 59, 59, tzinfo=UTC)) == datetime(2026, 11, 25, 10, tzinfo=UTC)
    plus2 = datetime(2026, 11, 25, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    assert blobpath.floor_hour(plus2) == datetime(2026, 11, 25, 10, tzinfo=UTC)


def test_scrubber_removes_signatures_keys_and_known_secrets() -> None:
    scrub = Scrubber()
    scrub.add("my-very-secret-sas-value")
    text = (
        "HTTPSConnectionPool(host='acct.blob.core.windows.net'): Max retries exceeded with url: "
        "/c?restype=container&comp=list&sv=2024-08-04&sig=AbC%2Bdef%3D&se=2030 "
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0a2V5Cg==;EndpointSuffix=x "
        "SharedAccessSignature=sv=1&sig=zzz;BlobEndpoint=y Authorization: SharedKey acct:SIGNATURE== "
        "Bearer eyJhbGciOi.payload.sig token=my-very-secret-sas-value"
    )
    out = scrub(text)
    for secret in ("AbC%2Bdef%3D", "c2VjcmV0a2V5Cg==", "zzz", "SIGNATURE==", "eyJhbGciOi", "my-very-secret-sas-value"):
        assert secret not in out
    assert "acct.blob.core.windows.net" in out  # the useful context stays
    assert "se=2030" in out


def test_account_name_from_url() -> None:
    assert account_name_from_url("https://myacct.blob.core.windows.net") == "myacct"
    assert account_name_from_url("https://myacct.blob.core.chinacloudapi.cn/") == "myacct"
    assert account_name_from_url("http://127.0.0.1:10000/devstoreaccount1") == "devstoreaccount1"
    assert account_name_from_url("http://azurite:10000/devstoreaccount1/") == "devstoreaccount1"
    assert account_name_from_url("https://storage.example.net") is None


def test_start_values() -> None:
    assert parse_start("earliest") == "earliest"
    assert parse_start("latest") == "latest"
    assert parse_start("2026-11-25T07:20:00Z") == datetime(2026, 11, 25, 7, 20, tzinfo=UTC)
    assert parse_start("2026-11-25T09:20:00+02:00") == datetime(2026, 11, 25, 7, 20, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"source\.start"):
        parse_start("yesterday")


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"container": "c", "connection_string": "UseDevelopmentStorage=true", "colour": 1}, "source.colour"),
        ({"connection_string": "UseDevelopmentStorage=true"}, "source.container"),
        ({"container": "c"}, "connection_string, or account_url"),
        (
            {"container": "c", "connection_string": "UseDevelopmentStorage=true", "account_url": "https://a.blob.x"},
            "not both",
        ),
        (
            {"container": "c", "account_url": "https://a.blob.x", "account_key": "k" * 20, "sas_token": "s" * 20},
            "not both",
        ),
        ({"container": "c", "account_url": "https://a.blob.x?sv=1&sig=SECRETSIG", "sas_token": "x"}, "query string"),
        ({"container": "c", "account_url": "https://storage.example.net", "account_key": "k" * 20}, "account_name"),
        ({"container": "c", "connection_string": "UseDevelopmentStorage=true", "discovery_refresh": 0}, "discovery"),
        ({"container": "c", "connection_string": "UseDevelopmentStorage=true", "start": "soon"}, "source.start"),
        ({"container": "c", "account_url": "http://127.0.0.1:1/devstoreaccount1"}, "token credential"),
    ],
)
def test_bad_config_is_rejected_with_the_key_and_no_secret(cfg: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        from_config(cfg)
    assert "SECRETSIG" not in str(info.value)
    assert "k" * 20 not in str(info.value)


def test_account_url_alone_uses_default_azure_credential() -> None:
    # Nothing is fetched until the first request, so this needs no Azure login.
    source = from_config({"type": "azure_blob", "container": "insights-logs-flowlogflowevent",
                          "account_url": "https://myacct.blob.core.windows.net"})  # fmt: skip
    try:
        assert source.identity == "myacct/insights-logs-flowlogflowevent"
        assert type(source.client.credential).__name__ == "DefaultAzureCredential"
    finally:
        source.close()
