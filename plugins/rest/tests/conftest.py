"""Fixtures of the REST connector's tests (the servers themselves are in tests/fix_http.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from headwater import Batch, Registry
from headwater.toolkit import reset_breakers
from headwater_rest import RestConnector, hooks
from tests.fix_http import SECRETS, HttpServer

#: Retries without waiting, so fault tests stay fast.
FAST_RETRY = {"attempts": 6, "initial": 0.0, "maximum": 0.01, "jitter": 0.0, "timeout": 30}


@dataclasses.dataclass
class Outcome:
    """What a read produced: the batches, and the error that ended it (if any)."""

    batches: list[Batch]
    error: BaseException | None = None

    @property
    def records(self) -> list[dict[str, Any]]:
        return [row for batch in self.batches for row in batch.rows()]

    @property
    def ids(self) -> list[Any]:
        return [row.get("id", row.get("name")) for row in self.records]

    @property
    def states(self) -> list[dict[str, Any]]:
        return [batch.state for batch in self.batches]


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    # Breakers are per origin and process-wide; a test that opens one must not fail the next.
    reset_breakers()
    yield
    reset_breakers()


@pytest.fixture(autouse=True)
def _no_secret_in_logs(
    caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> Iterator[None]:
    """Every test, passing or failing, must leave no secret in any log record."""
    caplog.set_level(logging.DEBUG)
    yield
    text = caplog.text
    leaked = [s for s in SECRETS if s in text]
    if "http_servers" in request.fixturenames:
        api: HttpServer = request.getfixturevalue("http_servers")[0]
        leaked += [t for t in api.state.tokens if t in text]
    assert [] == leaked


@pytest.fixture
def registry() -> Registry:
    """A registry with core's built-ins and this plugin only (no entry points)."""
    return Registry(autoload=False, plugins=[hooks])


@pytest.fixture
def make_config(http_api: HttpServer) -> Callable[..., dict[str, Any]]:
    """A config for the test API: ``make_config(streams={...}, auth={...})``."""

    def make(**overrides: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "base_url": http_api.url,
            "auth": {"type": "api_key", "key": "env:HW_TEST_API_KEY"},
            "retry": FAST_RETRY,
            "timeouts": {"connect": 2, "read": 5, "write": 5, "pool": 5},
        }
        config.update(overrides)
        return config

    return make


@pytest.fixture(autouse=True)
def _api_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fix_http import API_KEY, CLIENT_SECRET, CLIENT_SECRET_ENV

    monkeypatch.setenv("HW_TEST_API_KEY", API_KEY)
    monkeypatch.setenv(CLIENT_SECRET_ENV, CLIENT_SECRET)


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """Every read test runs through ``read`` and through ``aread``."""
    return str(request.param)


Reader = Callable[..., Outcome]


@pytest.fixture
def read(mode: str, registry: Registry) -> Reader:
    """``read(config, stream, state=None, **options)`` with a fresh connector, sync or async."""

    def sync_read(config: Any, stream: str, state: Any = None, **options: Any) -> Outcome:
        outcome = Outcome([])
        with RestConnector(config, registry=registry) as connector:
            try:
                for batch in connector.read(stream, state, **options):
                    outcome.batches.append(batch)
            except Exception as exc:
                outcome.error = exc
        return outcome

    def async_read(config: Any, stream: str, state: Any = None, **options: Any) -> Outcome:
        async def run() -> Outcome:
            outcome = Outcome([])
            async with RestConnector(config, registry=registry) as connector:
                try:
                    async for batch in connector.aread(stream, state, **options):
                        outcome.batches.append(batch)
                except Exception as exc:
                    outcome.error = exc
            return outcome

        return asyncio.run(run())

    return sync_read if mode == "sync" else async_read


def scan(*texts: object) -> list[str]:
    """The known secrets found in ``texts`` (reprs, messages, hints)."""
    joined = " ".join(str(t) for t in texts)
    return [s for s in SECRETS if s in joined]


@pytest.fixture
def secrets_in() -> Callable[..., list[str]]:
    """``secrets_in(*texts)`` → the known secrets found in them."""
    return scan


@pytest.fixture
def memory_keyring() -> Iterator[Any]:
    """A dict-backed keyring backend, installed as the process's keyring for one test."""
    import keyring
    from keyring.backend import KeyringBackend

    class Backend(KeyringBackend):
        priority = 1  # type: ignore[assignment]

        def __init__(self) -> None:
            super().__init__()
            self.store: dict[tuple[str, str], str] = {}

        def get_password(self, service: str, username: str) -> str | None:
            return self.store.get((service, username))

        def set_password(self, service: str, username: str, password: str) -> None:
            self.store[(service, username)] = password

        def delete_password(self, service: str, username: str) -> None:
            self.store.pop((service, username), None)

    previous = keyring.get_keyring()
    backend = Backend()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)
