"""
The shared retry policy and breaker on PostgreSQL: a server that goes away and comes back is
waited for (config ``retry``), a server that stays away opens the breaker (``breaker``).

The server is the real one behind a TCP proxy on loopback that the test stops (the
listening socket closed, every open connection cut, as a restart does) and starts again
on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from headwater import CircuitOpen, ConnectionFailed
from headwater_postgres import PostgresConnector


class _Proxy:
    """A stoppable TCP proxy: ``port`` on loopback forwards to ``target``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.accepted = 0

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and cut the open ones (a server going down)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown wakes the thread blocked in accept(): a close alone would leave the
            # socket listening until that accept returned.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            doomed, self._open = self._open, set()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.accepted += 1
                self._open |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(pg_dsn: str) -> Iterator[_Proxy]:
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    running = _Proxy((str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432)))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _connector(pg_dsn: str, proxy: _Proxy, **config: object) -> PostgresConnector:
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    return PostgresConnector(
        {
            "host": "127.0.0.1",
            "port": proxy.port,
            "dbname": info.get("dbname") or "test",
            "user": info.get("user") or "postgres",
            "connect_timeout": 2,
            # Each test its own breaker: the endpoint name carries the port.
            **config,
        }
    )


def test_a_server_restarting_mid_run_is_waited_for(pg_dsn, pg_admin, pg_schema, proxy):
    """
    Stopped after the first calls and started again 1 s later: the next check (a new
    connection) waits for it and succeeds, where one try fails; catalog calls go on.
    """
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id int PRIMARY KEY)')
    once = _connector(pg_dsn, proxy, retry={"attempts": 1})
    # Both share the server's breaker: a threshold the outage's failures cannot reach.
    pg = _connector(
        pg_dsn,
        proxy,
        retry={"attempts": 6, "initial": 0.3, "jitter": 0.1},
        breaker={"failure_threshold": 20},
    )
    try:
        assert ["id"] == [c["name"] for c in pg.metadata(f"{pg_schema}.t")["columns"]]
        proxy.stop()  # the pooled connection dies with it
        assert not once.check().ok  # the control: without retries the outage is an error
        threading.Timer(1.0, proxy.start).start()
        started = time.monotonic()
        assert pg.check().ok
        assert time.monotonic() - started >= 0.9  # it did wait for the server
        assert ["id"] == [c["name"] for c in pg.metadata(f"{pg_schema}.t")["columns"]]
        assert f"{pg_schema}.t" in {i.name for i in pg.list(pg_schema)}
    finally:
        pg.close()
        once.close()


async def test_async_calls_wait_for_a_restarting_server_too(pg_dsn, pg_admin, pg_schema, proxy):
    """The async twins go through the same policy and breaker."""
    import asyncio

    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id int PRIMARY KEY)')
    pg = _connector(pg_dsn, proxy, retry={"attempts": 6, "initial": 0.3, "jitter": 0.1})
    try:
        assert "id" == (await pg.ametadata(f"{pg_schema}.t"))["columns"][0]["name"]
        proxy.stop()
        asyncio.get_running_loop().call_later(1.0, proxy.start)
        started = time.monotonic()
        assert (await pg.acheck()).ok
        assert time.monotonic() - started >= 0.9
        assert "id" == (await pg.ametadata(f"{pg_schema}.t"))["columns"][0]["name"]
    finally:
        await pg.aclose()


def test_a_dead_server_opens_the_breaker(pg_dsn, proxy):
    """After failure_threshold failed calls, the next fails at once naming the server."""
    proxy.stop()
    pg = _connector(
        pg_dsn,
        proxy,
        retry={"attempts": 2, "initial": 0.05, "jitter": 0},
        breaker={"failure_threshold": 3, "reset_timeout": 60},
    )
    try:
        with pytest.raises(ConnectionFailed):
            pg.check_connection()  # two refused connects: two failures
        with pytest.raises(CircuitOpen) as opened:
            pg.check_connection()  # the third opens it; the retry stops at CircuitOpen
        assert f"127.0.0.1:{proxy.port}" in str(opened.value)
        proxy.start()
        started = time.monotonic()
        with pytest.raises(CircuitOpen):
            pg.metadata("pg_catalog.pg_class")  # still open: refused without a connection
        assert time.monotonic() - started < 0.5
        assert 0 == proxy.accepted
    finally:
        pg.close()


def test_retry_and_breaker_settings_are_validated():
    """Bad values are errors naming the field."""
    from headwater import ConfigError

    for bad, field in (
        ({"retry": {"attempts": 0}}, "retry.attempts"),
        ({"breaker": {"x": 1}}, "breaker"),
    ):
        with pytest.raises(ConfigError) as caught:
            PostgresConnector({"url": f"postgresql://u@h/{uuid.uuid4().hex}", **bad})
        assert field in str(caught.value)
