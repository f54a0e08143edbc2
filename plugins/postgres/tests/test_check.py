"""check(): typed results for every failure kind, TLS verification, and secrets never shown."""

from __future__ import annotations

import logging
import socket
from urllib.parse import urlsplit

import pytest
from tests.fix_services import free_port

from headwater import Category, HeadwaterError
from headwater_postgres import PostgresConnector

from .pg_helpers import rows_of


def _params(dsn: str, **overrides):
    parts = urlsplit(dsn)
    base = {
        "host": parts.hostname,
        "port": parts.port or 5432,
        "dbname": parts.path.lstrip("/"),
        "user": parts.username,
        "connect_timeout": 3,
    }
    return {**base, **overrides}


def _check(config):
    with PostgresConnector(config) as connector:
        return connector.check()


async def _acheck(config):
    async with PostgresConnector(config) as connector:
        return await connector.acheck()


def test_check_ok(pg):
    """A reachable server passes with its version in the message."""
    result = pg.check()
    assert (True, None) == (result.ok, result.category)
    assert "PostgreSQL" in result.message


def test_url_query_settings_reach_the_server(pg_dsn, app_name):
    """An application_name in the URL's query is the one the session gets (not the default)."""
    sep = "&" if "?" in pg_dsn else "?"
    url = f"{pg_dsn}{sep}application_name={app_name}-url"
    with PostgresConnector({"url": url}) as connector:
        [row] = rows_of(connector.read("SELECT current_setting('application_name') AS name"))
        assert f"{app_name}-url" == row["name"]


async def test_acheck_ok(apg):
    """The async twin passes too."""
    assert (await apg.acheck()).ok


@pytest.mark.parametrize(
    ("overrides", "category", "field"),
    [
        ({"dbname": "hw_no_such_db"}, Category.NOT_FOUND, "dbname"),
        ({"user": "hw_no_such_role"}, Category.AUTH, "user"),
        ({"host": "no-such-host.invalid"}, Category.NETWORK, "host"),
        ({"sslmode": "require"}, Category.TLS, "sslmode"),
    ],
)
def test_check_failure_categories(pg_dsn, overrides, category, field):
    """Unknown database / role, DNS failure and TLS refusal map to their categories."""
    result = _check(_params(pg_dsn, **overrides))
    assert (False, category, field) == (result.ok, result.category, result.field)
    assert "\n" not in result.message
    assert "Traceback" not in result.message


def test_check_refused_port(pg_dsn):
    """A closed port is a network failure on field port."""
    result = _check(_params(pg_dsn, port=free_port()))
    assert (False, Category.NETWORK, "port") == (result.ok, result.category, result.field)
    assert "\n" not in result.message


def test_check_connect_timeout_is_network(pg_dsn):
    """A server that accepts TCP but never answers times out as network on field host."""
    # A local listener that never accepts: the TCP handshake completes (the kernel's
    # backlog) and libpq waits for a reply until connect_timeout. TEST-NET addresses are
    # no use here: sandboxes route them to a gateway or a proxy that answers at once.
    secret = "hw-timeout-secret-771"
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        result = _check(
            _params(pg_dsn, host="127.0.0.1", port=port, password=secret, connect_timeout=2)
        )
    assert (False, Category.NETWORK, "host") == (result.ok, result.category, result.field)
    assert "timeout" in result.message
    assert "\n" not in result.message
    assert secret not in result.message


async def test_acheck_failure_matches_sync(pg_dsn):
    """The async check classifies failures like the sync one."""
    config = _params(pg_dsn, dbname="hw_no_such_db")
    sync, async_ = _check(config), await _acheck(config)
    assert (sync.ok, sync.category, sync.field) == (async_.ok, async_.category, async_.field)


# --- passwords and TLS (private cluster) ---------------------------------------------------


def _tls(server, **overrides):
    return {
        "host": server.host,
        "port": server.port,
        "dbname": "postgres",
        "user": "postgres",
        "connect_timeout": 5,
        **overrides,
    }


def test_verify_full_succeeds_with_right_ca_and_host(pg_tls_server):
    """verify-full against the generated CA and the certificate's host name passes."""
    result = _check(
        _tls(
            pg_tls_server,
            host=pg_tls_server.cert_host,
            sslmode="verify-full",
            sslrootcert=str(pg_tls_server.ca),
        )
    )
    assert (True, None) == (result.ok, result.category)


def test_verify_full_with_ip_in_certificate(pg_tls_server):
    """The certificate also names 127.0.0.1, so verify-full by IP passes."""
    result = _check(_tls(pg_tls_server, sslmode="verify-full", sslrootcert=str(pg_tls_server.ca)))
    assert result.ok


def test_verify_full_wrong_ca_is_tls(pg_tls_server):
    """A CA that did not sign the server certificate fails as tls."""
    result = _check(
        _tls(
            pg_tls_server,
            host=pg_tls_server.cert_host,
            sslmode="verify-full",
            sslrootcert=str(pg_tls_server.other_ca),
        )
    )
    assert (False, Category.TLS) == (result.ok, result.category)
    assert "\n" not in result.message


def test_verify_full_wrong_host_is_tls(pg_tls_server):
    """A host name the certificate does not name fails as tls (no silent weakening)."""
    # hostaddr connects to the server while host is what the certificate must name.
    url = (
        f"postgresql://postgres@db.wrong-name.invalid:{pg_tls_server.port}/postgres"
        f"?hostaddr={pg_tls_server.host}"
    )
    result = _check(
        {
            "url": url,
            "sslmode": "verify-full",
            "sslrootcert": str(pg_tls_server.ca),
            "connect_timeout": 5,
        }
    )
    assert (False, Category.TLS) == (result.ok, result.category)
    assert "\n" not in result.message


async def test_async_verify_full(pg_tls_server):
    """The async check verifies TLS the same way."""
    good = await _acheck(
        _tls(
            pg_tls_server,
            host=pg_tls_server.cert_host,
            sslmode="verify-full",
            sslrootcert=str(pg_tls_server.ca),
        )
    )
    bad = await _acheck(
        _tls(
            pg_tls_server,
            host=pg_tls_server.cert_host,
            sslmode="verify-full",
            sslrootcert=str(pg_tls_server.other_ca),
        )
    )
    assert (True, False, Category.TLS) == (good.ok, bad.ok, bad.category)


def test_client_certificate_logs_in_as_cert_user(pg_tls_server):
    """sslcert/sslkey log in a cert-authenticated role; without them: tls, field sslcert."""
    server = pg_tls_server
    config = _tls(
        server,
        host=server.cert_host,
        user=server.cert_user,
        sslmode="verify-full",
        sslrootcert=str(server.ca),
    )
    good = _check({**config, "sslcert": str(server.client_cert), "sslkey": str(server.client_key)})
    assert (True, None) == (good.ok, good.category)
    assert good.message.endswith(f" as {server.cert_user}")
    bad = _check(config)
    assert (False, Category.TLS, "sslcert") == (bad.ok, bad.category, bad.field)
    assert "\n" not in bad.message


def test_url_sslmode_never_weakened(pg_tls_server):
    """A URL asking for verify-full with a config saying otherwise is a config error."""
    from headwater import ConfigError

    url = f"postgresql://postgres@{pg_tls_server.host}:{pg_tls_server.port}/postgres"
    with pytest.raises(ConfigError):
        PostgresConnector({"url": url + "?sslmode=verify-full", "sslmode": "prefer"})


def test_wrong_password_is_auth_and_never_shown(pg_tls_server, caplog, monkeypatch):
    """A wrong password fails as auth; neither password appears in results, reprs or logs."""
    caplog.set_level(logging.DEBUG)
    wrong = "hw-wrong-secret-value-123"
    config = _tls(
        pg_tls_server, user=pg_tls_server.password_user, sslmode="require", password=wrong
    )
    connector = PostgresConnector(config)
    result = connector.check()
    assert (False, Category.AUTH, "password") == (result.ok, result.category, result.field)
    monkeypatch.setenv("HW_TEST_PG_PASSWORD", pg_tls_server.password)
    url = (
        f"postgresql://{pg_tls_server.password_user}:env:HW_TEST_PG_PASSWORD@"
        f"{pg_tls_server.host}:{pg_tls_server.port}/postgres?sslmode=require"
    )
    good = PostgresConnector({"url": url})
    ok = good.check()
    assert ok.ok
    with pytest.raises(HeadwaterError) as info:
        list(connector.read("pg_class"))
    texts = [
        repr(connector),
        str(connector.config),
        repr(connector.config),
        repr(good),
        str(good.config.sanitized()),
        str(result.to_dict()),
        str(ok.to_dict()),
        str(info.value),
        repr(info.value),
        caplog.text,
    ]
    for text in texts:
        assert wrong not in text
        assert pg_tls_server.password not in text
    assert "env:HW_TEST_PG_PASSWORD" == good.config.sanitized()["password"]
    connector.close()
    good.close()


def test_literal_password_in_url_is_masked(pg_dsn):
    """A literal password written in the URL is moved out of it and masked everywhere."""
    parts = urlsplit(pg_dsn)
    url = f"postgresql://{parts.username}:hw-literal-pw-999@{parts.hostname}:{parts.port}/x"
    connector = PostgresConnector({"url": url})
    assert "hw-literal-pw-999" not in repr(connector)
    assert "hw-literal-pw-999" not in connector.config.model_dump_json()
    assert "hw-literal-pw-999" not in (connector.config.url or "")
    assert "***" == connector.config.sanitized()["password"]


def test_password_resolved_per_connection_for_rotation(pg_tls_server):
    """A callable password is asked again for each new connection, so a rotation just works."""
    import psycopg
    from psycopg import sql

    current = {"value": pg_tls_server.password}
    calls = []

    def password():
        calls.append(1)
        return current["value"]

    config = _tls(pg_tls_server, user=pg_tls_server.password_user, sslmode="require")
    admin_dsn = (
        f"host={pg_tls_server.host} port={pg_tls_server.port} dbname=postgres "
        "user=postgres sslmode=require"
    )
    with PostgresConnector({**config, "password": password}) as connector:
        assert [{"one": 1}] == [r for b in connector.read("SELECT 1 AS one") for r in b.rows()]
        before = len(calls)
        rotated = pg_tls_server.password + "-rotated"
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(pg_tls_server.password_user), sql.Literal(rotated)
                )
            )
            try:
                current["value"] = rotated
                assert connector.check().ok
                assert len(calls) > before
            finally:
                admin.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(pg_tls_server.password_user),
                        sql.Literal(pg_tls_server.password),
                    )
                )
