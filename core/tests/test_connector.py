"""The connector base class: NotSupported defaults, typed check results, async twins, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from pydantic import BaseModel, Field

import headwater
from headwater import (
    Batch,
    Capability,
    Category,
    CheckResult,
    Connector,
    ConnectorConfig,
    FetchResult,
    Item,
    Partition,
    Secret,
    WriteResult,
    _redact,
    errors,
)
from headwater.toolkit import atomic_file, safe_destination

SECRET = "drv-Secret-7Qx2Lm9"


@pytest.fixture(autouse=True)
def _forget_secrets():
    """Each test starts with an empty redaction set."""
    _redact._forget_all()
    yield
    _redact._forget_all()


def registry() -> headwater.Registry:
    return headwater.Registry(autoload=False)


# --- test connectors ----------------------------------------------------------------------


class Inner(BaseModel):
    port: int = Field(description="a port")


class BareConfig(ConnectorConfig):
    pass


class Bare(Connector[BareConfig]):
    """Overrides nothing: every operation is the base default."""

    id = "bare"
    Config = BareConfig


class ProbeConfig(ConnectorConfig):
    name: str = Field(description="a required name")
    batch_size: int = Field(default=2, ge=1, description="rows per batch")
    password: Secret | None = Field(default=None, description="a secret")
    token: Secret | None = Field(default=None, description="another secret")
    inner: Inner | None = Field(default=None, description="nested settings")


class Probe(Connector[ProbeConfig]):
    """check_connection raises whatever the test put in ``to_raise``."""

    id = "probe"
    Config = ProbeConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.to_raise: BaseException | None = None
        self.releases = 0

    def check_connection(self) -> str:
        if self.to_raise is not None:
            raise self.to_raise
        return "probe is up"

    def release(self) -> None:
        self.releases += 1


class DriverAuthError(Exception):
    """Stands for a driver's own exception type."""


class Translating(Probe):
    """A connector that maps its driver's exceptions itself."""

    id = "translating"

    def translate_error(self, exc: BaseException) -> headwater.HeadwaterError:
        if isinstance(exc, DriverAuthError):
            return headwater.AuthFailed(f"login refused: {exc}", field="password")
        return super().translate_error(exc)


class Leaky(Probe):
    """A driver that echoes the password back in a multi-line error."""

    id = "leaky"

    def check_connection(self) -> str:
        password = self.secret("password")
        raise RuntimeError(
            f"FATAL: password authentication failed (password={password})\n"
            f"DETAIL: connection string was user=bob password={password}"
        )


class NativeAsync(Probe):
    """Overrides acheck_connection, as a natively async driver would."""

    id = "native"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sync_calls = 0

    def check_connection(self) -> str:
        self.sync_calls += 1
        return "sync path"

    async def acheck_connection(self) -> str:
        await asyncio.sleep(0)
        if self.to_raise is not None:
            raise self.to_raise
        return "native path"


class MemoryConfig(ConnectorConfig):
    batch_size: int = Field(default=2, ge=1, description="rows per batch")


PEOPLE = [{"id": i, "name": f"person-{i}"} for i in range(7)]


class Memory(Connector[MemoryConfig]):
    """In-memory tables: just enough to compare sync operations with their async twins."""

    id = "memory"
    Config = MemoryConfig
    capabilities = frozenset(
        {Capability.CHECK, Capability.LIST, Capability.READ, Capability.FETCH, Capability.WRITE}
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tables: dict[str, list[dict[str, Any]]] = {"people": list(PEOPLE), "empty": []}
        self.threads: set[int] = set()
        self.events: list[str] = []

    def check_connection(self) -> str:
        return f"{len(self.tables)} tables"

    def list(self, path: str | None = None):
        self.threads.add(threading.get_ident())
        for name in sorted(self.tables):
            yield Item(name, "table", size=len(self.tables[name]))

    def read(self, stream, state=None, *, batch_size=None, **options):
        self.threads.add(threading.get_ident())
        if stream not in self.tables:
            raise headwater.NotFound(f"no table {stream!r}", field="stream")
        rows = self.tables[stream]
        size = batch_size or self.config.batch_size
        start = state["offset"] if state else 0
        try:
            for i in range(start, len(rows), size):
                chunk = rows[i : i + size]
                yield Batch(stream, chunk, {"offset": i + len(chunk)})
        finally:
            self.events.append(f"read {stream} closed")

    def fetch(self, item, dest, *, overwrite=True):
        self.threads.add(threading.get_ident())
        target = safe_destination(dest, item)
        if target.exists() and not overwrite:
            raise headwater.AlreadyExists(f"{item} exists")
        data = json.dumps(self.tables[item]).encode()
        with atomic_file(target) as out:
            out.write(data)
        return FetchResult(target, len(data), "sha256:" + hashlib.sha256(data).hexdigest(), True)

    def metadata(self, item):
        self.threads.add(threading.get_ident())
        return {"name": item, "rows": len(self.tables[item]), "columns": ["id", "name"]}

    def write(self, stream, batches, **options):
        self.threads.add(threading.get_ident())
        # All-or-nothing: rows become visible only when the whole input was consumed.
        staged = [
            row
            for batch in batches
            for row in (batch.rows() if isinstance(batch, Batch) else batch)
        ]
        self.tables[stream] = staged
        return WriteResult(stream, len(staged))


# --- NotSupported defaults ---------------------------------------------------------------

SYNC_OPERATIONS = {
    "list": lambda c, d: list(c.list()),
    "read": lambda c, d: list(c.read("s")),
    "fetch": lambda c, d: c.fetch("item", d),
    "metadata": lambda c, d: c.metadata("item"),
    "write": lambda c, d: c.write("s", [[{"a": 1}]]),
    "partitions": lambda c, d: c.partitions("s", 2),
    "read_partition": lambda c, d: list(c.read_partition(Partition("s", 0, 1))),
    "check_connection": lambda c, d: c.check_connection(),
    "check_part_write": lambda c, d: c.check_part_write("s"),
    "from_url": lambda c, d: type(c).from_url("bare://x"),
}


@pytest.mark.parametrize("operation", sorted(SYNC_OPERATIONS))
def test_missing_operation_raises_not_supported(operation, tmp_path):
    """An operation the connector does not override raises NotSupported naming the connector."""
    with pytest.raises(headwater.NotSupported) as info:
        SYNC_OPERATIONS[operation](Bare({}), tmp_path)
    message = str(info.value)
    assert "'bare'" in message
    assert "\n" not in message


async def _drain_async(aiterable):
    return [x async for x in aiterable]


ASYNC_OPERATIONS = {
    "alist": lambda c, d: _drain_async(c.alist()),
    "aread": lambda c, d: _drain_async(c.aread("s")),
    "afetch": lambda c, d: c.afetch("item", d),
    "ametadata": lambda c, d: c.ametadata("item"),
    "awrite": lambda c, d: c.awrite("s", [[{"a": 1}]]),
    "apartitions": lambda c, d: c.apartitions("s", 2),
    "aread_partition": lambda c, d: _drain_async(c.aread_partition(Partition("s", 0, 1))),
}


@pytest.mark.parametrize("operation", sorted(ASYNC_OPERATIONS))
async def test_missing_async_operation_raises_not_supported(operation, tmp_path):
    """The async twin of a missing operation raises the same NotSupported."""
    with pytest.raises(headwater.NotSupported) as info:
        await ASYNC_OPERATIONS[operation](Bare({}), tmp_path)
    assert "'bare'" in str(info.value)


def test_bare_check_is_a_failed_result_not_an_exception():
    """check() on a connector without check_connection reports failure instead of raising."""
    result = Bare({}).check()
    assert result.ok is False
    assert "'bare'" in result.message


# --- check() ----------------------------------------------------------------------------

CHECK_CASES = [
    (headwater.AuthFailed("password rejected", field="password"), Category.AUTH, "password"),
    (headwater.NotFound("no database 'x'", field="database"), Category.NOT_FOUND, "database"),
    (headwater.ConnectionFailed("connection refused", field="host"), Category.NETWORK, "host"),
    (headwater.TLSFailure("certificate verify failed"), Category.TLS, None),
    (headwater.PermissionDenied("no SELECT on t", field="table"), Category.PERMISSION, "table"),
    (headwater.RateLimited("slow down", retry_after=3.0), Category.RATE_LIMITED, None),
    (headwater.ServerError("503 unavailable"), Category.SERVER, None),
    (headwater.ConfigError("port out of range", field="port"), Category.CONFIG, "port"),
    (headwater.CredentialError("no env var", field="password"), Category.AUTH, "password"),
    (headwater.CircuitOpen("breaker open"), Category.NETWORK, None),
]


@pytest.mark.parametrize(
    ("error", "category", "field"), CHECK_CASES, ids=[type(c[0]).__name__ for c in CHECK_CASES]
)
def test_check_returns_typed_result_for_headwater_errors(error, category, field):
    """Each error class becomes a failed CheckResult with its category, message and field."""
    connector = Probe({"name": "p"})
    connector.to_raise = error
    result = connector.check()
    assert isinstance(result, CheckResult)
    assert result.ok is False
    assert category == result.category
    assert field == result.field
    assert error.message == result.message
    assert result.elapsed >= 0


def test_check_keeps_hint():
    """The error's hint reaches the result."""
    connector = Probe({"name": "p"})
    connector.to_raise = headwater.AuthFailed("bad", field="user", hint="check the user name")
    assert "check the user name" == connector.check().hint


@pytest.mark.parametrize(
    ("exc", "category"),
    [
        (RuntimeError("driver exploded"), Category.SERVER),
        (OSError("disk says no"), Category.SERVER),
        (TimeoutError("timed out after 5s"), Category.NETWORK),
        (ConnectionRefusedError("refused"), Category.NETWORK),
    ],
)
def test_check_translates_raw_driver_exceptions(exc, category):
    """A raw driver exception is translated by default (type name kept), never raised."""
    connector = Probe({"name": "p"})
    connector.to_raise = exc
    result = connector.check()
    assert result.ok is False
    assert category == result.category
    assert f"{type(exc).__name__}: {exc}" == result.message


def test_check_uses_connector_translate_error():
    """A connector's translate_error override decides the category of its driver's errors."""
    connector = Translating({"name": "p"})
    connector.to_raise = DriverAuthError("role bob unknown")
    result = connector.check()
    assert Category.AUTH == result.category
    assert "password" == result.field
    assert "login refused: role bob unknown" == result.message


def test_check_success_result():
    """A passing check is ok with the connector's message and no category."""
    result = Probe({"name": "p"}).check()
    assert (True, "probe is up", None, None) == (
        result.ok,
        result.message,
        result.category,
        result.field,
    )


def test_check_does_not_swallow_keyboard_interrupt():
    """Only ordinary failures become results; KeyboardInterrupt still stops the program."""
    connector = Probe({"name": "p"})
    connector.to_raise = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        connector.check()


def test_check_never_shows_resolved_secret(caplog):
    """A secret echoed by the driver is masked in the message, result dict and debug log."""
    connector = Leaky({"name": "p", "password": SECRET}, registry=registry())
    with caplog.at_level(logging.DEBUG, logger="headwater"):
        result = connector.check()
    assert result.ok is False
    texts = [
        result.message,
        repr(result),
        json.dumps(result.to_dict()),
        caplog.text,
        repr(connector),
    ]
    for text in texts:
        assert SECRET not in text
    assert "***" in result.message
    assert "\n" not in result.message
    assert any("leaky" in r.getMessage() for r in caplog.records)


async def test_acheck_never_shows_resolved_secret():
    """The async check masks an echoed secret too."""
    connector = Leaky({"name": "p", "password": SECRET}, registry=registry())
    result = await connector.acheck()
    assert result.ok is False
    assert SECRET not in result.message


@pytest.mark.parametrize(
    "error",
    [None, headwater.AuthFailed("nope", field="password"), RuntimeError("driver down")],
    ids=["ok", "auth", "raw"],
)
async def test_acheck_equals_check(error):
    """acheck returns the same result as check (apart from timing)."""
    connector = Probe({"name": "p"})
    connector.to_raise = error
    sync = connector.check().to_dict()
    asynchronous = (await connector.acheck()).to_dict()
    sync.pop("elapsed")
    asynchronous.pop("elapsed")
    assert sync == asynchronous


async def test_native_acheck_connection_is_used():
    """A native acheck_connection override is what acheck runs; the sync one is not called."""
    connector = NativeAsync({"name": "p"})
    result = await connector.acheck()
    assert (True, "native path") == (result.ok, result.message)
    assert 0 == connector.sync_calls


async def test_native_acheck_connection_failure_is_typed():
    """A failure in a native acheck_connection still becomes a typed result."""
    connector = NativeAsync({"name": "p"})
    connector.to_raise = headwater.TLSFailure("self-signed certificate")
    result = await connector.acheck()
    assert (False, Category.TLS, "self-signed certificate") == (
        result.ok,
        result.category,
        result.message,
    )
    assert 0 == connector.sync_calls


# --- async twins ---------------------------------------------------------------------------


async def test_alist_equals_list():
    """alist yields the same items as list, computed off the event loop thread."""
    connector = Memory({})
    expected = list(connector.list())
    connector.threads.clear()
    actual = [item async for item in connector.alist()]
    assert expected == actual
    assert threading.get_ident() not in connector.threads


@pytest.mark.parametrize(
    ("stream", "state"), [("people", None), ("people", {"offset": 4}), ("empty", None)]
)
async def test_aread_equals_read(stream, state):
    """aread yields the same batches and states as read, from a worker thread."""
    connector = Memory({})
    expected = list(connector.read(stream, state, batch_size=3))
    connector.threads.clear()
    actual = [batch async for batch in connector.aread(stream, state, batch_size=3)]
    assert expected == actual
    assert threading.get_ident() not in connector.threads


async def test_aread_propagates_errors():
    """An error raised by the sync read surfaces from aread unchanged."""
    with pytest.raises(headwater.NotFound, match="nope"):
        await _drain_async(Memory({}).aread("nope"))


async def test_afetch_equals_fetch(tmp_path):
    """afetch writes the same bytes and reports the same size and checksum as fetch."""
    connector = Memory({})
    sync = connector.fetch("people", tmp_path / "sync")
    asynchronous = await connector.afetch("people", tmp_path / "async")
    assert (sync.size, sync.checksum, sync.verified) == (
        asynchronous.size,
        asynchronous.checksum,
        asynchronous.verified,
    )
    assert sync.path.read_bytes() == asynchronous.path.read_bytes()
    assert tmp_path / "async" / "people" == asynchronous.path
    with pytest.raises(headwater.AlreadyExists):
        await connector.afetch("people", tmp_path / "async", overwrite=False)


async def test_ametadata_equals_metadata():
    """ametadata returns what metadata returns."""
    connector = Memory({})
    assert connector.metadata("people") == await connector.ametadata("people")


async def test_awrite_sync_iterable_equals_write():
    """awrite with a sync iterable of batches and lists writes what write writes."""
    rows = [{"id": 1}, {"id": 2}, {"id": 3}]
    inputs = [Batch("t", rows[:2], {}), rows[2:]]
    sync = Memory({})
    asynchronous = Memory({})
    assert sync.write("t", inputs) == await asynchronous.awrite("t", inputs)
    assert rows == asynchronous.tables["t"]
    assert threading.get_ident() not in asynchronous.threads


async def test_awrite_async_iterable():
    """awrite accepts an async iterable and writes every batch in order."""

    async def produce():
        for i in range(10):
            await asyncio.sleep(0)
            yield [{"id": i}]

    connector = Memory({})
    result = await connector.awrite("t", produce())
    assert WriteResult("t", 10) == result
    assert [{"id": i} for i in range(10)] == connector.tables["t"]


@pytest.mark.parametrize("method", ["aread", "alist"])
async def test_async_iteration_closes_sync_generator_on_aclose(method):
    """Closing the async iterator after an early break runs the sync generator's cleanup."""
    closed = []

    class Closing(Memory):
        def read(self, stream, state=None, *, batch_size=None, **options):
            try:
                yield from super().read(stream, state, batch_size=1)
            finally:
                closed.append(True)

        def list(self, path=None):
            try:
                yield from super().list(path)
            finally:
                closed.append(True)

    connector = Closing({})
    iterator = connector.aread("people") if method == "aread" else connector.alist()
    async with contextlib.aclosing(iterator) as it:
        async for _ in it:
            break
    assert [True] == closed


async def test_aread_early_break_eventually_closes_sync_generator():
    """Breaking out of aread without aclosing still finalizes the sync generator (no leak)."""
    connector = Memory({})
    async for _ in connector.aread("people", batch_size=1):
        break
    for _ in range(500):
        if connector.events:
            break
        await asyncio.sleep(0.01)
    assert ["read people closed"] == connector.events


class SlowWriter(Connector[MemoryConfig]):
    """A sync writer that consumes slowly and records how far ahead the producer got."""

    id = "slow-writer"
    Config = MemoryConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.produced = 0
        self.leads: list[int] = []
        self.seen_error: BaseException | None = None
        self.committed: list[dict[str, Any]] | None = None
        self.fail_after: int | None = None

    def write(self, stream, batches, **options):
        staged = []
        try:
            for batch in batches:
                staged.extend(batch)
                self.leads.append(self.produced - len(staged))
                if self.fail_after is not None and len(staged) >= self.fail_after:
                    raise headwater.ServerError("disk full on the server")
                time.sleep(0.002)
        except BaseException as exc:
            # A real writer rolls back here instead of committing.
            self.seen_error = exc
            raise
        self.committed = staged
        return WriteResult(stream, len(staged))


async def test_awrite_applies_back_pressure():
    """The async producer is never drained far ahead of a slow sync writer."""
    connector = SlowWriter({})

    async def produce():
        for i in range(60):
            connector.produced += 1
            yield [{"id": i}]

    result = await connector.awrite("t", produce())
    assert WriteResult("t", 60) == result
    assert [{"id": i} for i in range(60)] == connector.committed
    assert max(connector.leads) <= 5


async def test_awrite_producer_error_aborts_writer():
    """If the async producer raises, the writer sees an error (and rolls back) and awrite re-raises."""
    connector = SlowWriter({})

    async def produce():
        for i in range(5):
            yield [{"id": i}]
        raise ValueError("upstream broke")

    with pytest.raises(ValueError, match="upstream broke"):
        await connector.awrite("t", produce())
    assert isinstance(connector.seen_error, headwater.HeadwaterError)
    assert connector.committed is None


@pytest.mark.timeout(20)
async def test_awrite_writer_failure_stops_endless_producer():
    """A writer failing early makes awrite raise its error instead of draining the producer."""
    connector = SlowWriter({})
    connector.fail_after = 1
    pulled = 0

    async def produce():
        nonlocal pulled
        while True:
            pulled += 1
            yield [{"id": pulled}]

    with pytest.raises(headwater.ServerError, match="disk full"):
        await connector.awrite("t", produce())
    assert pulled < 10


_WRITER_FAILS_WHILE_QUEUE_FULL = textwrap.dedent(
    """
    import asyncio, threading, time
    import headwater

    class C(headwater.ConnectorConfig):
        pass

    done_producing = threading.Event()

    class W(headwater.Connector[C]):
        id = "w"
        Config = C

        def write(self, stream, batches, **options):
            for batch in batches:
                done_producing.wait(5)
                time.sleep(0.2)
                raise headwater.ServerError("writer failed")
            return headwater.WriteResult(stream, 0)

    async def produce():
        for i in range(3):
            yield [{"id": i}]
        done_producing.set()

    async def main():
        try:
            await W({}).awrite("t", produce())
        except headwater.ServerError as exc:
            print("RAISED", exc)

    asyncio.run(main())
    """
)


def test_awrite_writer_failure_after_producer_finished_does_not_hang():
    """A writer that fails while the batch queue is full and the producer is done: awrite still returns."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _WRITER_FAILS_WHILE_QUEUE_FULL],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("awrite hung after the writer failed with a full queue")
    assert 0 == proc.returncode, proc.stderr
    assert "RAISED writer failed" == proc.stdout.strip()


# --- lifecycle -----------------------------------------------------------------------------


def test_close_is_idempotent():
    """close() releases once however often it is called, and marks the connector closed."""
    connector = Probe({"name": "p"})
    assert connector.closed is False
    connector.close()
    connector.close()
    assert 1 == connector.releases
    assert connector.closed is True
    assert "closed" in repr(connector)


async def test_aclose_is_idempotent_and_shares_state_with_close():
    """aclose() releases once, and close() after aclose() (or aclose twice) does nothing more."""
    connector = Probe({"name": "p"})
    await connector.aclose()
    await connector.aclose()
    connector.close()
    assert 1 == connector.releases
    other = Probe({"name": "p"})
    other.close()
    await other.aclose()
    assert 1 == other.releases


def test_context_manager_closes_even_on_error():
    """`with` closes the connector on normal exit and when the body raises."""
    with Probe({"name": "p"}) as connector:
        assert connector.closed is False
    assert (True, 1) == (connector.closed, connector.releases)
    failing = Probe({"name": "p"})
    with pytest.raises(RuntimeError, match="body"), failing:
        raise RuntimeError("body")
    assert (True, 1) == (failing.closed, failing.releases)


async def test_async_context_manager_closes():
    """`async with` closes the connector, also when the body raises."""
    async with Probe({"name": "p"}) as connector:
        assert connector.closed is False
    assert (True, 1) == (connector.closed, connector.releases)
    failing = Probe({"name": "p"})
    with pytest.raises(RuntimeError, match="body"):
        async with failing:
            raise RuntimeError("body")
    assert (True, 1) == (failing.closed, failing.releases)


async def test_native_arelease_used_by_aclose():
    """A connector overriding arelease gets it called by aclose instead of release."""
    calls = []

    class AsyncPool(Probe):
        async def arelease(self) -> None:
            calls.append("arelease")

    connector = AsyncPool({"name": "p"})
    async with connector:
        pass
    await connector.aclose()
    assert (["arelease"], 0) == (calls, connector.releases)


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "name"),
        ({"name": "p", "batch_size": "lots"}, "batch_size"),
        ({"name": "p", "batch_size": 0}, "batch_size"),
        ({"name": "p", "colour": "red"}, "colour"),
        ({"name": "p", "inner": {"port": "x"}}, "inner.port"),
    ],
)
def test_config_error_is_one_line_naming_the_field(data, field):
    """Invalid config raises a one-line ConfigError naming connector and field."""
    with pytest.raises(headwater.ConfigError) as info:
        Probe(data)
    error = info.value
    assert field == error.field
    assert "\n" not in str(error)
    assert str(error).startswith(f"probe config: field {field!r}: ")
    assert "headwater connectors show probe" in (error.hint or "")


def test_config_error_counts_further_problems():
    """With several problems, the first is shown and the rest are counted."""
    with pytest.raises(headwater.ConfigError) as info:
        Probe({"batch_size": 0, "colour": "red"})
    assert str(info.value).endswith("(and 2 more problems)")


def test_config_of_another_connector_refused():
    """Passing another connector's Config instance is a ConfigError naming both models."""
    with pytest.raises(headwater.ConfigError, match=r"ProbeConfig.*MemoryConfig"):
        Probe(MemoryConfig())


def test_config_instance_accepted_and_frozen():
    """A Config instance is used as is, and configs are immutable."""
    config = ProbeConfig(name="p")
    connector = Probe(config)
    assert config is connector.config
    with pytest.raises(ValueError, match="frozen"):
        config.name = "q"  # type: ignore[misc]


def test_secret_fields():
    """secret_fields lists exactly the fields typed Secret or Secret | None."""
    assert ["password", "token"] == ProbeConfig.secret_fields()
    assert [] == MemoryConfig.secret_fields()


def test_sanitized_and_dumps_never_contain_literal_secret():
    """Literal secrets are masked in sanitized(), model_dump (both modes), JSON and reprs."""
    config = ProbeConfig(name="p", password=SECRET, token="env:HW_TEST_TOKEN")
    connector = Probe(config)
    sanitized = config.sanitized()
    assert {
        "name": "p",
        "batch_size": 2,
        "password": "***",
        "token": "env:HW_TEST_TOKEN",
    } == sanitized
    texts = [
        json.dumps(sanitized),
        str(config.model_dump()),
        json.dumps(config.model_dump(mode="json")),
        config.model_dump_json(),
        repr(config),
        str(config),
        repr(connector),
    ]
    for text in texts:
        assert SECRET not in text


def test_sanitized_shows_callable_placeholder():
    """A callable secret shows as a placeholder and is not called by sanitized()."""
    calls = []
    config = ProbeConfig(name="p", password=lambda: calls.append(1) or SECRET)
    assert "<callable>" == config.sanitized()["password"]
    assert [] == calls


def test_connector_secret_resolves_literal_and_reference(monkeypatch):
    """Connector.secret resolves at call time; unset and non-secret fields are errors."""
    monkeypatch.setenv("HW_TEST_TOKEN", "tok-from-env-1")
    connector = Probe(
        {"name": "p", "password": SECRET, "token": "env:HW_TEST_TOKEN"}, registry=registry()
    )
    assert SECRET == connector.secret("password")
    assert "tok-from-env-1" == connector.secret("token")
    empty = Probe({"name": "p"}, registry=registry())
    with pytest.raises(headwater.ConfigError) as info:
        empty.secret("password")
    assert "password" == info.value.field
    with pytest.raises(TypeError):
        empty.secret("name")


# --- values -------------------------------------------------------------------------------


def test_batch_rows_from_dicts():
    """A dict batch reports its length and hands its rows back as they are."""
    rows = [{"a": 1}, {"a": 2}]
    batch = Batch("s", rows, {"offset": 2})
    assert (2, False, rows) == (len(batch), batch.is_arrow, batch.rows())


def test_batch_rows_from_arrow():
    """An Arrow batch reports its length and converts to the same dicts."""
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": None}, {"a": 3, "b": "ü"}]
    batch = Batch("s", pa.RecordBatch.from_pylist(rows), {"offset": 3})
    assert (3, True, rows) == (len(batch), batch.is_arrow, batch.rows())
    assert {"offset": 3} == batch.state


def test_item_to_dict():
    """Item.to_dict is JSON-friendly: ISO datetimes, extra only when present."""
    moment = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    full = Item("t.csv", "stream", size=10, modified=moment, extra={"format": "csv"})
    assert {
        "name": "t.csv",
        "kind": "stream",
        "size": 10,
        "modified": "2024-05-01T12:30:00+00:00",
        "extra": {"format": "csv"},
    } == full.to_dict()
    assert {"name": "d/", "kind": "directory", "size": None, "modified": None} == Item(
        "d/", "directory"
    ).to_dict()
    json.dumps(full.to_dict())


def test_check_result_to_dict():
    """CheckResult.to_dict carries plain strings and a rounded elapsed time."""
    failed = CheckResult.from_error(
        headwater.AuthFailed("rejected", field="password", hint="rotate it"), elapsed=0.123456
    )
    assert {
        "ok": False,
        "category": "auth",
        "message": "rejected",
        "field": "password",
        "hint": "rotate it",
        "elapsed": 0.1235,
    } == failed.to_dict()
    assert {
        "ok": True,
        "category": None,
        "message": "ok",
        "field": None,
        "hint": None,
        "elapsed": 0.0,
    } == CheckResult.success().to_dict()


def test_check_result_success_is_redacted():
    """A success message that happens to contain a resolved secret is masked."""
    _redact.register_secret(SECRET)
    assert SECRET not in CheckResult.success(f"connected as {SECRET}").message


ERROR_CLASSES = [
    getattr(errors, name)
    for name in errors.__all__
    if name != "Category" and issubclass(getattr(errors, name), Exception)
]


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_errors_pickle_round_trip(cls):
    """Every error survives pickling with its type, message, field and hint."""
    error = cls("something failed", field="host", hint="try another host")
    clone = pickle.loads(pickle.dumps(error))
    assert (type(error), error.message, error.field, error.hint, str(error)) == (
        type(clone),
        clone.message,
        clone.field,
        clone.hint,
        str(clone),
    )


def test_rate_limited_and_server_error_pickle_keep_retry_details():
    """retry_after and an instance's retryable opt-out survive pickling (workers re-raise them)."""
    limited = pickle.loads(pickle.dumps(headwater.RateLimited("429", retry_after=7.5)))
    assert 7.5 == getattr(limited, "retry_after", "missing")
    server = pickle.loads(
        pickle.dumps(headwater.ServerError("500", retry_after=2.0, retryable=False))
    )
    assert (2.0, False) == (getattr(server, "retry_after", "missing"), server.retryable)


def test_error_messages_are_one_line():
    """Multi-line driver text becomes one line in messages and hints."""
    error = headwater.ConnectorError("FATAL: boom\n  DETAIL: more\n\nHINT: x", hint="a\nb")
    assert ("FATAL: boom DETAIL: more HINT: x", "a b") == (str(error), error.hint)


def test_capabilities_default_is_check_only():
    """A connector declares only CHECK unless it says otherwise."""
    assert frozenset({Capability.CHECK}) == Bare.capabilities
    assert Capability.READ in Memory.capabilities


def test_iterate_in_thread_keeps_one_iterator_on_one_thread():
    """A thread-affine driver (sqlite3) works: every step of one iterator runs on one thread."""
    import contextlib
    import sqlite3
    import threading

    from headwater.toolkit import iterate_in_thread

    threads: set[int] = set()
    closed: list[bool] = []

    def rows():
        conn = sqlite3.connect(":memory:")  # refuses use from any other thread
        try:
            conn.execute("CREATE TABLE t (n)")
            conn.executemany("INSERT INTO t VALUES (?)", [(n,) for n in range(50)])
            for (n,) in conn.execute("SELECT n FROM t ORDER BY n"):
                threads.add(threading.get_ident())
                yield n
        finally:
            conn.close()  # would raise on another thread
            closed.append(True)

    async def consume(stop: int | None) -> list[int]:
        got = []
        async with contextlib.aclosing(iterate_in_thread(rows)) as items:
            async for n in items:
                got.append(n)
                await asyncio.sleep(0)  # let other tasks run between steps
                if n == stop:
                    break
        return got

    async def main() -> tuple[list[int], list[int]]:
        return await asyncio.gather(consume(None), consume(9))

    whole, part = asyncio.run(main())
    assert list(range(50)) == whole
    assert list(range(10)) == part
    assert [True, True] == closed
    assert threading.get_ident() not in threads


def test_stats_is_part_of_the_contract(tmp_path):
    """Every connector answers stats(); one that holds no pool says so with {}."""
    from headwater import SourceRegistry
    from headwater._builtin.files_connector import FilesConnector

    files = FilesConnector({"root": tmp_path})
    assert {} == files.stats()
    registry = SourceRegistry(tmp_path / "sources.toml")
    registry.add("local", "files", {"root": str(tmp_path)})
    registry.connector("local")
    assert {} == registry.stats()  # a live connector without pools is not listed
    registry.close_all()


# --- part writes: the driver's check --------------------------------------------------------


class PartWriter(Bare):
    """Declares part writes and refuses stream ``refused`` in ``check_part_write``."""

    id = "part-writer"
    capabilities = frozenset({Capability.WRITE, Capability.PART_WRITES})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checked: list[tuple[str, dict[str, Any]]] = []

    def check_part_write(self, stream: str, **options: Any) -> None:
        self.checked.append((stream, options))
        if stream == "refused":
            raise headwater.NotSupported("not that stream in parts", field="stream")


def test_check_part_write_accepts_by_default_where_part_writes_are_declared():
    """The default check: nothing to refuse for a connector with PART_WRITES."""
    assert Bare.check_part_write(PartWriter({}), "s", upsert_on="id") is None


def test_a_part_write_asks_the_connector_once_on_the_driver():
    """
    PartWrite.to (what headwater.dask and headwater.ray start a write with, before any task)
    asks check_part_write with the stream and the write options, and raises its refusal.
    """
    from headwater._shipping import PartWrite

    class Plugin:
        @headwater.hookimpl
        def register_connectors(self) -> list[type[Connector[Any]]]:
            return [PartWriter]

    writer = PartWriter({}, registry=headwater.Registry(autoload=False, plugins=[Plugin()]))
    write = PartWrite.to(writer, "kept", {"mode": "replace"}, sources=None, registry=None)
    assert ("kept", {"mode": "replace"}) == (write.stream, write.options)
    with pytest.raises(headwater.NotSupported) as refused:
        PartWrite.to(writer, "refused", {}, sources=None, registry=None)
    assert "stream" == refused.value.field
    assert [("kept", {"mode": "replace"}), ("refused", {})] == writer.checked
