"""filesystem(): an fsspec (adlfs) filesystem of the configured source, against Azurite."""

from __future__ import annotations

import io

import pytest

from headwater import ConfigError
from headwater_azure_blob import AzureBlobConnector

pytestmark = pytest.mark.integration

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("adlfs")


def _parquet(table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.fixture
def parquet_source(config, container):
    """Two Parquet parts under the source's prefix, one blob outside it."""
    parts = [pa.table({"id": [1, 2], "s": ["a", "b"]}), pa.table({"id": [3], "s": ["c"]})]
    for n, part in enumerate(parts):
        container.upload_blob(f"root/data/part-{n}.parquet", _parquet(part))
    container.upload_blob("elsewhere/x.parquet", _parquet(parts[0]))
    return {**config, "prefix": "root/"}


@pytest.mark.parametrize("auth", ["account_key", "connection_string", "sas_token"])
def test_pyarrow_dataset_and_pandas_read_through_the_source(
    parquet_source, azurite, container, auth, monkeypatch
):
    """Paths are relative to the source's root; every credential kind resolves."""
    import datetime as dt

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    config = dict(parquet_source)
    if auth == "connection_string":
        monkeypatch.setenv("HW_TEST_AZ_CS", azurite.connection_string)
        config.pop("account_url")
        config.pop("account_key")
        config["connection_string"] = "env:HW_TEST_AZ_CS"  # resolved by headwater
    elif auth == "sas_token":
        config.pop("account_key")
        config["sas_token"] = generate_container_sas(
            azurite.account_name,
            container.container_name,
            account_key=azurite.account_key,
            permission=ContainerSasPermissions(read=True, list=True),
            expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        )
    # Credentials of another account in the environment are not used.
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=nobody;AccountKey=eA==")
    connector = AzureBlobConnector(config)
    try:
        fs = connector.filesystem()
        assert sorted(fs.ls("data", detail=False)) == [
            "data/part-0.parquet",
            "data/part-1.parquet",
        ]
        import pyarrow.dataset as ds

        table = ds.dataset("data", filesystem=fs, format="parquet").to_table()
        assert sorted(table.column("id").to_pylist()) == [1, 2, 3]
        # What pandas.read_parquet(path, filesystem=fs) does underneath.
        part = pq.read_table("data/part-0.parquet", filesystem=fs)
        assert part.column("s").to_pylist() == ["a", "b"]
        with fs.open("data/part-1.parquet", "rb") as handle:
            assert pq.read_table(handle).column("id").to_pylist() == [3]
        # The prefix is the root: nothing outside it is reachable by a relative name.
        assert not fs.exists("elsewhere/x.parquet")
    finally:
        connector.close()


def test_writes_land_under_the_prefix(parquet_source, container):
    """A file written through the filesystem is a blob under the source's prefix."""
    connector = AzureBlobConnector(parquet_source)
    try:
        fs = connector.filesystem()
        pq.write_table(pa.table({"v": [1.5]}), "out/v.parquet", filesystem=fs)
        data = container.download_blob("root/out/v.parquet").readall()
        assert pq.read_table(io.BytesIO(data)).column("v").to_pylist() == [1.5]
    finally:
        connector.close()


def test_no_credential_in_repr_and_a_wrong_key_fails_cleanly(parquet_source, azurite):
    """The filesystem's repr holds no key; a wrong key fails on use, without echoing it."""
    connector = AzureBlobConnector(parquet_source)
    fs = connector.filesystem()
    assert azurite.account_key not in repr(fs)
    connector.close()
    wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="
    connector = AzureBlobConnector({**parquet_source, "account_key": wrong})
    try:
        fs = connector.filesystem()
        from azure.core.exceptions import HttpResponseError

        # adlfs raises the SDK's own errors (not headwater's): the service's text only.
        with pytest.raises(HttpResponseError, match="failed to authenticate") as info:
            fs.ls("data")
        assert wrong not in str(info.value)
    finally:
        connector.close()


def test_closed_connector_and_plain_http_are_refused(parquet_source):
    """No filesystem from a closed connector, nor credentials over plain http elsewhere."""
    connector = AzureBlobConnector(parquet_source)
    connector.close()
    with pytest.raises(Exception, match="closed"):
        connector.filesystem()
    remote = {**parquet_source, "account_url": "http://example.invalid", "account_name": "acct"}
    with pytest.raises(ConfigError, match="plain http"):
        AzureBlobConnector(remote).filesystem()
    key = parquet_source["account_key"]
    remote_cs = {
        "connection_string": f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={key};"
        "BlobEndpoint=http://example.invalid/acct;",
        "container": parquet_source["container"],
    }
    with pytest.raises(ConfigError, match="plain http") as info:
        AzureBlobConnector(remote_cs).filesystem()
    assert info.value.field == "connection_string"
    assert key not in str(info.value)
