"""is_loopback: which hosts may receive credentials over plain http."""

from __future__ import annotations

import pytest

from headwater.toolkit import is_loopback


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST", "api.localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"]
)
def test_loopback_hosts(host):
    """localhost names and loopback addresses are loopback."""
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "example.com",
        "localhost.example.com",
        "10.0.0.1",
        "0.0.0.0",  # noqa: S104  a host name under test, not a bind address
        "::",
        "128.0.0.1",
    ],
)
def test_other_hosts(host):
    """Everything else is not, names that merely contain "localhost" included."""
    assert not is_loopback(host)
