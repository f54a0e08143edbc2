"""
Network policy helpers shared by the connectors that talk to services over TCP.

The rule they serve: credentials never cross the network in the clear. A connector may
send them over plain ``http://`` only to this machine (an emulator such as Azurite, a
test server), which is what `is_loopback` decides.
"""

from __future__ import annotations

import ipaddress


def is_loopback(host: str | None) -> bool:
    """
    True for ``localhost`` (and ``*.localhost``) and loopback addresses: 127.0.0.0/8 and
    ``::1``, bracketed or not. Any other name is not loopback, whatever it resolves to:
    a DNS answer can change, the name cannot.
    """
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
