"""Auth schemes against the loopback API: static credentials, OAuth2 tokens, rotation, caching."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import threading
import time
from typing import Any

import httpx
import pytest

from headwater import AuthFailed, Category, Registry, hookimpl
from headwater_rest import RestConnector, hooks
from tests.fix_http import (
    API_KEY,
    BASIC_PASSWORD,
    BASIC_USER,
    BEARER,
    CLIENT_ID,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    oauth_auth,
)
from tests.fix_services import run_with_secret_service, service_unavailable

SINGLE = {"s": {"path": "/single", "params": {"n": 3}, "records": "data"}}
CURSOR = {
    "s": {
        "path": "/cursor",
        "params": {"n": 47, "limit": 10},
        "records": "data",
        "pagination": {"type": "cursor", "cursor_path": "meta.next_cursor"},
    }
}


@pytest.mark.parametrize(
    ("auth", "sent"),
    [
        ({"type": "bearer", "token": BEARER}, ("authorization", f"Bearer {BEARER}")),
        ({"type": "api_key", "key": API_KEY, "name": "X-API-Key"}, ("x-api-key", API_KEY)),
        ({"type": "api_key", "key": API_KEY, "location": "query", "name": "api_key"}, None),
        ({"type": "basic", "username": BASIC_USER, "password": BASIC_PASSWORD}, None),
    ],
    ids=["bearer", "api_key-header", "api_key-query", "basic"],
)
def test_static_schemes_authenticate(read, make_config, http_api, auth, sent):
    """Each static scheme gets through the API's auth check."""
    outcome = read(make_config(auth=auth, streams=SINGLE), "s")
    assert outcome.error is None
    assert [1, 2, 3] == outcome.ids
    if sent is not None:
        assert sent[1] == http_api.log[-1].headers[sent[0]]


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "bearer", "token": "bt-wrong-token-value"},
        {"type": "api_key", "key": "ak-wrong-key-value", "location": "query", "name": "api_key"},
        {"type": "basic", "username": BASIC_USER, "password": "pw-wrong-password"},
    ],
    ids=["bearer", "api_key-query", "basic"],
)
def test_rejected_credentials_are_auth_errors_without_the_secret(read, make_config, auth):
    """A 401 is AuthFailed, not retried, and its message shows no credential."""
    outcome = read(make_config(auth=auth, streams=SINGLE), "s")
    assert isinstance(outcome.error, AuthFailed)
    text = f"{outcome.error} {outcome.error!r} {outcome.error.hint}"
    assert "wrong" not in text


def test_env_reference_is_resolved_at_connect(read, make_config, monkeypatch):
    """``env:NAME`` secrets are read when the connector connects, not when it is built."""
    monkeypatch.delenv("HW_TEST_API_KEY")
    config = make_config(streams=SINGLE)
    outcome = read(config, "s")
    assert "HW_TEST_API_KEY" in str(outcome.error)
    monkeypatch.setenv("HW_TEST_API_KEY", API_KEY)
    assert [1, 2, 3] == read(config, "s").ids


def test_one_token_request_for_concurrent_sync_reads(make_config, http_api, registry):
    """Eight threads reading at once cause one token request; one more after expiry."""
    http_api.state.token_delay = 0.3
    http_api.state.token_ttl = 1
    connector = RestConnector(
        make_config(auth=oauth_auth(http_api), streams=SINGLE), registry=registry
    )
    results: list[list[Any]] = []

    def burst() -> None:
        barrier = threading.Barrier(8)

        def one() -> None:
            barrier.wait()
            results.append([r["id"] for b in connector.read("s") for r in b.rows()])

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    with connector:
        burst()
        assert 1 == http_api.state.token_hits
        time.sleep(1.05)  # the token's 1 s lifetime runs out
        burst()
    assert 2 == http_api.state.token_hits
    assert [[1, 2, 3]] * 16 == results


async def test_one_token_request_for_concurrent_async_reads(make_config, http_api, registry):
    """Eight tasks reading at once cause one token request; one more after expiry."""
    http_api.state.token_delay = 0.3
    http_api.state.token_ttl = 1

    async def one(connector: RestConnector) -> list[Any]:
        return [r["id"] async for b in connector.aread("s") for r in b.rows()]

    async with RestConnector(
        make_config(auth=oauth_auth(http_api), streams=SINGLE), registry=registry
    ) as c:
        first = await asyncio.gather(*[one(c) for _ in range(8)])
        assert 1 == http_api.state.token_hits
        await asyncio.sleep(1.05)
        second = await asyncio.gather(*[one(c) for _ in range(8)])
    assert 2 == http_api.state.token_hits
    assert [[1, 2, 3]] * 16 == first + second


def test_token_revoked_mid_stream_is_refreshed_once_and_replayed(read, make_config, http_api):
    """A 401 mid-stream fetches one new token and replays that request once; nothing is lost."""
    http_api.state.revoke_after = 2
    outcome = read(make_config(auth=oauth_auth(http_api), streams=CURSOR), "s")
    assert outcome.error is None
    assert list(range(1, 48)) == outcome.ids
    assert 2 == http_api.state.token_hits
    assert 6 == http_api.state.hits("/cursor")  # five pages, one replayed


def test_token_expiring_mid_stream_is_renewed_once(read, make_config, http_api):
    """A 1 s token runs out during a 1 s+ paginated read: one renewal, every record once."""
    http_api.state.token_ttl = 1
    slow = {
        "s": {
            "path": "/offset",
            # 0.25 s a page, 5 pages: the last one is asked for at least 1 s after the first
            # token was issued, and long before a second token would run out.
            "params": {"n": 47, "delay": 0.25},
            "records": "items",
            "pagination": {"type": "offset", "limit": 10},
        }
    }
    outcome = read(make_config(auth=oauth_auth(http_api), streams=slow), "s")
    assert outcome.error is None
    assert list(range(1, 48)) == outcome.ids
    assert 2 == http_api.state.hits("/oauth/token")
    assert 2 == http_api.state.token_hits
    pages = http_api.state.seen("/offset")
    assert ["0", "10", "20", "30", "40"] == [seen.query["offset"] for seen in pages]
    # The pages went out with two tokens: the first one until it ran out, then the new one.
    used = [seen.headers["authorization"] for seen in pages]
    first, second = dict.fromkeys(used)
    assert [first] * used.count(first) + [second] * used.count(second) == used


def test_token_sent_in_body_mode(read, make_config, http_api):
    """``client_auth: body`` sends the client credentials as form fields."""
    outcome = read(make_config(auth=oauth_auth(http_api, client_auth="body"), streams=SINGLE), "s")
    assert outcome.error is None
    assert "/oauth/token" == http_api.log[0].path
    assert "authorization" not in http_api.log[0].headers


def test_wrong_client_secret_is_auth_error(read, make_config, http_api, monkeypatch, registry):
    """A refused client is AuthFailed naming the field; check() reports category auth."""
    monkeypatch.setenv("HW_TEST_CLIENT_SECRET", "cs-not-the-right-one")
    config = make_config(auth=oauth_auth(http_api), streams=SINGLE)
    outcome = read(config, "s")
    assert isinstance(outcome.error, AuthFailed)
    assert "auth.client_secret" == outcome.error.field
    assert "cs-not-the-right-one" not in repr(outcome.error)
    with RestConnector(config, registry=registry) as connector:
        result = connector.check()
    assert (False, Category.AUTH) == (result.ok, result.category)


def test_token_endpoint_outage_is_retried(read, make_config, http_api):
    """A 503 from the token endpoint is retried like any request."""
    http_api.state.fail("/oauth/token", "503")
    outcome = read(make_config(auth=oauth_auth(http_api), streams=SINGLE), "s")
    assert outcome.error is None
    assert (2, 1) == (http_api.state.hits("/oauth/token"), http_api.state.token_hits)


def test_rotated_refresh_token_is_saved_atomically(read, make_config, http_api, tmp_path, caplog):
    """A rotated refresh token replaces the file it came from; the next connector uses it."""
    http_api.state.rotate_refresh = True
    token_file = tmp_path / "refresh-token"
    token_file.write_text(REFRESH_TOKEN + "\n")
    auth = {
        "type": "oauth2_refresh_token",
        "token_url": http_api.url + "/oauth/token",
        "refresh_token": f"file:{token_file}",
        "client_id": CLIENT_ID,
    }
    config = make_config(auth=auth, streams=SINGLE)
    assert [1, 2, 3] == read(config, "s").ids
    rotated = token_file.read_text()
    assert http_api.state.refresh_token == rotated
    assert REFRESH_TOKEN != rotated
    assert [] == [p.name for p in tmp_path.iterdir() if p.name != "refresh-token"]
    # A new connector (as a new process would) reads the rotated token and works.
    assert [1, 2, 3] == read(config, "s").ids
    assert 2 == http_api.state.token_hits
    assert rotated not in caplog.text


def test_keyring_token_cache_is_shared_between_connectors(
    read, make_config, http_api, memory_keyring
):
    """With ``token_cache: keyring`` a second connector reuses the first one's token."""
    config = make_config(auth=oauth_auth(http_api, token_cache="keyring"), streams=SINGLE)
    assert [1, 2, 3] == read(config, "s").ids
    assert [1, 2, 3] == read(config, "s").ids
    assert 1 == http_api.state.token_hits
    assert 1 == len(memory_keyring.store)


def test_keyring_token_cache_keeps_users_apart(read, make_config, http_api, memory_keyring):
    """Two refresh tokens of one client: the second user never gets the first one's token."""

    def auth(refresh_token: str) -> dict[str, Any]:
        return {
            "type": "oauth2_refresh_token",
            "token_url": http_api.url + "/oauth/token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
            "token_cache": "keyring",
        }

    assert [1, 2, 3] == read(make_config(auth=auth(REFRESH_TOKEN), streams=SINGLE), "s").ids
    assert 1 == len(memory_keyring.store)
    # Another user's refresh token (which this server does not know) must go to the token
    # endpoint itself, and be refused there, rather than reuse the cached access token.
    outcome = read(make_config(auth=auth("rt-of-another-user"), streams=SINGLE), "s")
    assert isinstance(outcome.error, AuthFailed)
    assert [] == outcome.ids
    assert 2 == http_api.state.hits("/oauth/token")
    # The same user again: the cached token, no new token request.
    assert [1, 2, 3] == read(make_config(auth=auth(REFRESH_TOKEN), streams=SINGLE), "s").ids
    assert 2 == http_api.state.hits("/oauth/token")


#: One process of the cross-process test: reads the stream (sync or async) with DEBUG
#: logging on stderr, so a token that reached a log would show up in what it printed.
_KEYRING_READER = """
import asyncio, json, logging, sys

import keyring

from headwater import Registry
from headwater_rest import RestConnector, hooks

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
config = json.loads(open(sys.argv[1], encoding="utf-8").read())
connector = RestConnector(config, registry=Registry(autoload=False, plugins=[hooks]))


async def aread():
    async with connector:
        return [row["id"] async for batch in connector.aread("s") for row in batch.rows()]


if sys.argv[2] == "async":
    ids = asyncio.run(aread())
else:
    with connector:
        ids = [row["id"] for batch in connector.read("s") for row in batch.rows()]
print("BACKEND", type(keyring.get_keyring()).__module__)
print("IDS", json.dumps(ids))
print("FETCHES", connector.http.auth.fetches)
"""


@pytest.mark.keyring
def test_keyring_token_cache_is_shared_between_processes(make_config, http_api, tmp_path):
    """Two processes, one real Secret Service (gnome-keyring): one token fetch, no secret shown."""
    config = make_config(auth=oauth_auth(http_api, token_cache="keyring"), streams=CURSOR)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "reader.py").write_text(_KEYRING_READER)
    python, reader = shlex.quote(sys.executable), shlex.quote(str(tmp_path / "reader.py"))
    config_file = shlex.quote(str(tmp_path / "config.json"))
    # One after the other: the second must find what the first stored, not race it.
    proc = run_with_secret_service(
        tmp_path,
        f"{python} {reader} {config_file} sync >first.out 2>first.err\n"
        f"{python} {reader} {config_file} async >second.out 2>second.err\n",
    )
    outputs = {
        name: (tmp_path / name).read_text() if (tmp_path / name).exists() else ""
        for name in ("first.out", "first.err", "second.out", "second.err")
    }
    errors = outputs["first.err"] + outputs["second.err"] + proc.stderr
    if proc.returncode != 0 and "no module named 'secretstorage'" in errors.lower():
        service_unavailable("the secretstorage package is missing")
    assert 0 == proc.returncode, errors[-3000:]
    first, second = outputs["first.out"].splitlines(), outputs["second.out"].splitlines()
    for out in (first, second):
        assert "BACKEND keyring.backends.SecretService" in out
        assert f"IDS {json.dumps(list(range(1, 48)))}" in out
    assert ("FETCHES 1" in first, "FETCHES 0" in second) == (True, True)
    assert 1 == http_api.state.token_hits
    [token] = http_api.state.tokens
    # Every page of both reads carried the one token the first process fetched.
    assert {f"Bearer {token}"} == {
        seen.headers.get("authorization") for seen in http_api.log if seen.path == "/cursor"
    }
    assert 10 == http_api.state.hits("/cursor")
    # The logs were really written (DEBUG), so not finding a secret in them means something.
    assert "fetching an OAuth2 token" in outputs["first.err"]
    printed = [*outputs.values(), proc.stdout, proc.stderr]
    assert [] == [s for s in (token, CLIENT_SECRET) if any(s in text for text in printed)]


class _HeaderScheme:
    """A third-party plugin adding an auth scheme through ``register_auth_schemes``."""

    @hookimpl
    def register_auth_schemes(self):
        class KeyAuth(httpx.Auth):
            def __init__(self, name: str, value: str) -> None:
                self.name, self.value = name, value

            def auth_flow(self, request):
                request.headers[self.name] = self.value
                yield request

        def make(config, secret):
            return KeyAuth(config["header_name"], secret("key"))

        return {"custom_key": make}


def test_auth_scheme_from_another_plugin(make_config, http_api):
    """A scheme registered by another plugin is used, and its literal settings are masked."""
    registry = Registry(autoload=False, plugins=[hooks, _HeaderScheme()])
    auth = {"type": "custom_key", "key": API_KEY, "header_name": "X-API-Key"}
    with RestConnector(make_config(auth=auth, streams=SINGLE), registry=registry) as connector:
        assert [1, 2, 3] == [r["id"] for b in connector.read("s") for r in b.rows()]
        assert API_KEY not in repr(connector)
        assert "X-API-Key" in repr(connector)
    assert API_KEY == http_api.log[-1].headers["x-api-key"]


def test_unknown_auth_type_lists_known_ones(read, make_config):
    """An auth type nobody provides is a config error listing the known types."""
    outcome = read(make_config(auth={"type": "kerberos"}, streams=SINGLE), "s")
    assert "kerberos" in str(outcome.error)
    assert "oauth2_client_credentials" in str(outcome.error)


def test_builtin_schemes_are_registered_through_the_hook(registry):
    """``register_auth_schemes`` exposes the six built-in schemes as httpx.Auth factories."""
    schemes = registry.auth_schemes()
    expected = {
        "none",
        "bearer",
        "api_key",
        "basic",
        "oauth2_client_credentials",
        "oauth2_refresh_token",
    }
    assert expected <= set(schemes)
    made = schemes["bearer"]({"token": "x"}, lambda field: "bt-from-hook")
    assert isinstance(made, httpx.Auth)
