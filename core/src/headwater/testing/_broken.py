"""
Copies of a connector that cannot work, made from its config, for the contract check
that check() can fail when the author gave no ``bad_credentials_connector``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headwater._connector import Connector


def failing_variants(connector: Connector[Any]) -> list[tuple[str, Connector[Any]]]:
    """
    Copies of ``connector`` that cannot work, made from its config: every secret wrong;
    the server at a closed port of this machine (``port``/``host`` fields, URLs); every
    path missing. Each with a label saying what was broken.
    """
    import secrets as random
    import socket
    import tempfile
    from urllib.parse import urlsplit, urlunsplit

    from pydantic import BaseModel

    from headwater._secrets import Secret

    wrong = Secret.literal_value(f"headwater-contract-wrong-{random.token_hex(8)}")

    def with_wrong_secrets(value: Any) -> tuple[Any, bool]:
        if isinstance(value, Secret):
            return wrong, True
        if isinstance(value, BaseModel):
            updates = {}
            for name in type(value).model_fields:
                new, changed = with_wrong_secrets(getattr(value, name, None))
                if changed:
                    updates[name] = new
            return (value.model_copy(update=updates), True) if updates else (value, False)
        if isinstance(value, dict):
            pairs = {key: with_wrong_secrets(item) for key, item in value.items()}
            if any(changed for _new, changed in pairs.values()):
                return {key: new for key, (new, _c) in pairs.items()}, True
        return value, False

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # free once the socket is closed: nobody listens
    config = connector.config
    fields = type(config).model_fields
    unreachable: dict[str, Any] = {}
    missing: dict[str, Any] = {}
    for name in fields:
        value = getattr(config, name, None)
        if name == "port" and isinstance(value, int) and not isinstance(value, bool):
            unreachable["port"] = closed
            if "host" in fields:
                unreachable["host"] = "127.0.0.1"
        elif isinstance(value, str) and "://" in value:
            parts = urlsplit(value)
            if parts.hostname and parts.scheme != "file":
                user, at, _hostport = parts.netloc.rpartition("@")
                netloc = f"{user}{at}127.0.0.1:{closed}"
                unreachable[name] = urlunsplit(parts._replace(netloc=netloc))
        elif isinstance(value, Path):
            # In a directory that does not exist either, so nothing gets created there.
            gone = Path(tempfile.gettempdir()) / f"headwater-contract-{random.token_hex(8)}"
            missing[name] = gone / value.name if value.name else gone

    configs: list[tuple[str, Any]] = []
    bad, changed = with_wrong_secrets(config)
    if changed:
        configs.append(("every secret wrong", bad))
    if unreachable:
        label = f"{', '.join(sorted(unreachable))} at a closed port"
        configs.append((label, config.model_copy(update=unreachable)))
    if missing:
        configs.append((f"{', '.join(sorted(missing))} missing", config.model_copy(update=missing)))
    return [(label, type(connector)(made, registry=connector.registry)) for label, made in configs]
