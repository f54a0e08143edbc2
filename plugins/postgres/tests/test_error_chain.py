"""A failed call's whole exception chain is as clean as the CLI: no password anywhere."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from tests.chain_texts import chain_texts

from headwater import AuthFailed, HeadwaterError
from headwater_postgres import PostgresConnector


def _calls(connector: PostgresConnector):
    async def aread() -> None:
        async for _ in connector.aread("t"):
            pass

    return {
        "metadata": lambda: connector.metadata("t"),
        "read": lambda: list(connector.read("t")),
        "list": lambda: list(connector.list()),
        "ametadata": lambda: asyncio.run(connector.ametadata("t")),
        "aread": lambda: asyncio.run(aread()),
    }


@pytest.mark.parametrize("call", ["metadata", "read", "list", "ametadata", "aread"])
def test_wrong_password_in_the_url_is_nowhere_in_the_chain(pg_tls_server, call):
    """A wrong password written in the URL: the traceback, logging and the chain hide it."""
    wrong = f"wrong-{uuid.uuid4().hex}"
    url = (
        f"postgresql://{pg_tls_server.password_user}:{wrong}@{pg_tls_server.host}:"
        f"{pg_tls_server.port}/postgres?sslmode=require"
    )
    connector = PostgresConnector({"url": url, "connect_timeout": 5})
    try:
        with pytest.raises(AuthFailed) as caught:
            _calls(connector)[call]()
    finally:
        connector.close()
    text = chain_texts(caught.value)
    assert wrong not in text
    # The driver's exception is kept as a redacted copy, which still says what failed.
    cause = caught.value.__cause__
    assert "RedactedError" == type(cause).__name__
    assert "psycopg" in getattr(cause, "original_type", "")
    assert "password authentication failed" in text


def test_unknown_role_with_a_password_is_nowhere_in_the_chain(pg_dsn):
    """Any connection failure: psycopg's error keeps the connection's parameters; we do not."""
    import psycopg

    password = f"pw-{uuid.uuid4().hex}"
    info = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    url = f"postgresql://hw_no_such_role:{password}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{info.get('dbname', 'test')}"
    connector = PostgresConnector({"url": url})
    try:
        with pytest.raises(HeadwaterError) as caught:
            connector.metadata("t")
    finally:
        connector.close()
    assert password not in chain_texts(caught.value)
