"""
PostgreSQL for tests: the project's server, per-test schemas, and a throwaway TLS cluster.

* ``--pg-dsn`` / ``HEADWATER_TEST_PG_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``)
  names the server; without one the tests skip locally and fail in CI.
* ``pg_schema`` creates a fresh schema for one test and drops it afterwards.
* ``pg_tls_server`` starts a private cluster (``initdb`` / ``pg_ctl``, as the
  ``postgres`` user when running as root) with ``ssl=on`` and a certificate signed by a
  CA generated for the session, for ``verify-full`` tests; ``cert_user`` logs in only
  with the client certificate ``client_cert`` / ``client_key`` signed by that CA.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fix_certs import make_certs, make_client_cert, openssl_available
from tests.fix_services import free_port, service_unavailable

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pg-dsn",
        default=os.environ.get("HEADWATER_TEST_PG_DSN", DEFAULT_DSN),
        help="PostgreSQL server for integration tests (env HEADWATER_TEST_PG_DSN).",
    )


@pytest.fixture(scope="session")
def pg_dsn(request: pytest.FixtureRequest) -> str:
    """The test server's DSN; skips (fails in CI) when no server answers."""
    import psycopg

    dsn: str = request.config.getoption("--pg-dsn")
    try:
        psycopg.connect(dsn, connect_timeout=3).close()
    except psycopg.Error as exc:
        service_unavailable(f"no PostgreSQL at {dsn}: {str(exc).splitlines()[0]}")
    return dsn


@pytest.fixture
def pg_admin(pg_dsn: str) -> Iterator[Any]:
    """An autocommit psycopg connection for setting up and inspecting test data."""
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def pg_schema(pg_admin: Any) -> Iterator[str]:
    """A fresh schema for one test, dropped (with everything in it) afterwards."""
    name = f"hw_test_{uuid.uuid4().hex[:10]}"
    pg_admin.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        pg_admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


# --- a throwaway TLS cluster ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TLSServer:
    """A running private cluster with ssl=on."""

    host: str
    port: int
    #: CA that signed the server certificate (for ``sslrootcert``).
    ca: Path
    #: A different CA that did not sign it.
    other_ca: Path
    #: The host name in the certificate (an alias of 127.0.0.1).
    cert_host: str
    #: A role that must log in with a password (scram-sha-256); every other role is trusted.
    password_user: str = "hw_password_user"
    password: str = dataclasses.field(default_factory=lambda: f"pw-{uuid.uuid4().hex}", repr=False)
    #: A role that must log in with a client certificate (``cert``), signed by ``ca``.
    cert_user: str = "hw_cert_user"

    @property
    def client_cert(self) -> Path:
        """The certificate of ``cert_user`` (``sslcert``); its key is `client_key`."""
        return self.ca.parent / "client.crt"

    @property
    def client_key(self) -> Path:
        """The private key of `client_cert` (``sslkey``)."""
        return self.ca.parent / "client.key"


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@pytest.fixture(scope="session")
def pg_tls_server() -> Iterator[TLSServer]:
    """A private PostgreSQL cluster with TLS on (about 10 s to start, once per session)."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl or not openssl_available():
        service_unavailable("initdb, pg_ctl and openssl are needed for the TLS cluster")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        service_unavailable("running as root without runuser: cannot start PostgreSQL")
    # Not pytest's tmp_path: it lives under a 0700 root-owned directory postgres cannot enter.
    base = Path(tempfile.mkdtemp(prefix="headwater-pg-tls-"))
    base.chmod(0o755)
    data, certs = base / "data", base / "certs"
    certs.mkdir()
    port = free_port()
    try:
        make_certs(certs)
        make_client_cert(certs, "client", cn=TLSServer.cert_user)
        if os.geteuid() == 0:
            shutil.chown(base, "postgres", "postgres")
        subprocess.run(
            _as_postgres([initdb, "--no-sync", "-U", "postgres", "--auth=trust", "-D", str(data)]),
            check=True,
            capture_output=True,
        )
        for name in ("server.crt", "server.key", "ca.crt"):
            shutil.copy(certs / name, data / name)
        (data / "server.key").chmod(0o600)
        if os.geteuid() == 0:
            for name in ("server.crt", "server.key", "ca.crt"):
                shutil.chown(data / name, "postgres", "postgres")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
            # Client certificates are checked against the CA (only cert_user needs one).
            conf.write("ssl_ca_file = 'ca.crt'\n")
        # Only TLS connections may log in, so a plain connection cannot pass by accident.
        (data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"hostssl all {TLSServer.password_user} 127.0.0.1/32 scram-sha-256\n"
            f"hostssl all {TLSServer.cert_user} 127.0.0.1/32 cert\n"
            "hostssl all all 127.0.0.1/32 trust\n"
        )
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres(
                [pg_ctl, "-w", "-D", str(data), "-l", str(base / "log"), "-o", options, "start"]
            ),
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        detail = getattr(exc, "stderr", b"") or b""
        service_unavailable(f"could not start a TLS PostgreSQL cluster: {exc} {detail[-300:]!r}")
    server = TLSServer("127.0.0.1", port, certs / "ca.crt", certs / "other.crt", "localhost")
    try:
        import psycopg
        from psycopg import sql

        with psycopg.connect(
            host=str(base), port=port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(server.password_user), sql.Literal(server.password)
                )
            )
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(server.cert_user)))
        yield server
    finally:
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)
