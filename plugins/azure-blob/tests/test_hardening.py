"""Clear errors for bad input: connection strings on az:// URLs, bad keys, bad names, clashing blobs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from headwater import AlreadyExists, ConfigError
from headwater_azure_blob import AzureBlobConnector
from headwater_azure_blob._config import config_from_url


def test_az_url_with_a_connection_string_override(azurite, container):
    """``az://c`` plus ``connection_string=``: the string names the account, no env needed."""
    config = config_from_url(
        f"az://{container.container_name}",
        {"connection_string": azurite.connection_string},
        environ={},
    )
    with AzureBlobConnector(config) as connector:
        assert [] == list(connector.list())


def test_cli_ls_with_a_connection_string(azurite, container):
    """`headwater ls az://c -c connection_string=...` lists the container (exit 0)."""
    container.upload_blob("a.txt", b"x")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AZURE_STORAGE_")  # nothing to fall back on
    }
    proc = subprocess.run(
        [
            sys.executable, "-m", "headwater", "ls", f"az://{container.container_name}",
            "-c", f"connection_string={azurite.connection_string}",
        ],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert 0 == proc.returncode, proc.stderr
    assert "a.txt" in proc.stdout
    assert azurite.account_key not in proc.stdout + proc.stderr


@pytest.mark.parametrize("key", ["not base64 at all!", "abc"])
def test_invalid_base64_account_key_names_account_key(make_twin, key):
    """A key that is not base64 is a config error on account_key, not an AD token failure."""
    twin = make_twin(account_key=key)
    result = twin.connector.check()
    assert (False, "account_key") == (result.ok, result.field)
    assert "base64" in result.message
    assert key not in result.message
    with pytest.raises(ConfigError) as caught:
        list(twin.connector.list())
    assert "account_key" == caught.value.field
    assert key not in str(caught.value)


def test_container_name_error_does_not_echo_the_input(azurite):
    bad = "Sig=Zq9-LEAKED-VALUE"
    with pytest.raises(ConfigError) as caught:
        AzureBlobConnector(
            {"account_url": azurite.blob_url, "account_key": azurite.account_key, "container": bad}
        )
    assert bad not in str(caught.value)
    assert bad not in repr(caught.value.__dict__)
    assert "container" in str(caught.value)


async def test_blob_and_a_blob_under_it_cannot_both_be_fetched(twin, container, tmp_path):
    """Blobs ``dir`` and ``dir/child.txt``: the second is refused with one clear error."""
    container.upload_blob("dir", b"a file")
    container.upload_blob("dir/child.txt", b"a child")
    await twin.fetch("dir", tmp_path)
    with pytest.raises(AlreadyExists, match="dir") as caught:
        await twin.fetch("dir/child.txt", tmp_path)
    assert "file" in str(caught.value)
    assert b"a file" == (tmp_path / "dir").read_bytes()
    # The other order: the directory is there first, and the file blob is refused.
    await twin.fetch("dir/child.txt", tmp_path / "other")
    with pytest.raises(AlreadyExists, match="directory"):
        await twin.fetch("dir", tmp_path / "other")


def test_invalid_base64_key_in_a_connection_string(azurite, container):
    connection_string = azurite.connection_string.replace(azurite.account_key, "not-a-key!")
    connector = AzureBlobConnector(
        {"connection_string": connection_string, "container": container.container_name}
    )
    with connector, pytest.raises(ConfigError) as caught:
        list(connector.list())
    assert "connection_string" == caught.value.field
    assert "not-a-key!" not in str(caught.value)
