"""Credentials stay home, failures are typed, dead APIs trip the breaker, secrets never show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from typing import Any

import pytest

from headwater import Category, CircuitOpen, ConfigError, ConnectionFailed
from headwater_rest import OriginRefused, RestConnector
from tests.fix_http import API_KEY, BEARER, CLIENT_ID, CLIENT_SECRET
from tests.fix_services import free_port

NEXT_OTHER = {
    "path": "/next-url",
    "params": {"n": 47, "other": 1},
    "records": "data",
    "pagination": {"type": "next_url", "next_url_path": "links.next"},
}
LINK_OTHER = {"path": "/link", "params": {"n": 47, "other": 1}, "pagination": {"type": "link"}}
#: Never resolves: ``.invalid`` is reserved for exactly that (RFC 6761).
NO_SUCH_HOST = "https://headwater-no-such-host.invalid"


def auth_variants(api) -> dict[str, dict[str, Any]]:
    return {
        "api_key-header": {"type": "api_key", "key": API_KEY},
        "api_key-query": {
            "type": "api_key",
            "key": API_KEY,
            "location": "query",
            "name": "api_key",
        },
        "bearer": {"type": "bearer", "token": BEARER},
        "oauth2": {
            "type": "oauth2_client_credentials",
            "token_url": api.url + "/oauth/token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    }


@pytest.mark.parametrize("stream", [NEXT_OTHER, LINK_OTHER], ids=["next_url", "link"])
def test_next_url_to_another_origin_is_refused(read, make_config, http_other, stream):
    """A next link to another port is refused after the first page; nothing reaches that host."""
    outcome = read(make_config(streams={"s": stream}), "s")
    assert isinstance(outcome.error, OriginRefused)
    assert "allowed_hosts" == outcome.error.field
    assert list(range(1, 11)) == outcome.ids
    assert [] == http_other.log


@pytest.mark.parametrize("auth", ["api_key-header", "api_key-query", "bearer", "oauth2"])
@pytest.mark.parametrize("stream", [NEXT_OTHER, LINK_OTHER], ids=["next_url", "link"])
def test_allowed_other_host_is_followed_without_credentials(
    read, make_config, http_api, http_other, auth, stream
):
    """With the other host allowed, every record arrives and that host sees no credential."""
    config = make_config(
        auth=auth_variants(http_api)[auth],
        streams={"s": stream},
        allowed_hosts=[f"{http_other.host}:{http_other.port}"],
        headers={"X-Custom": "only-for-the-api"},
    )
    outcome = read(config, "s")
    assert outcome.error is None
    assert list(range(1, 48)) == outcome.ids
    assert 4 == len(http_other.log)
    assert [] == [seen.credentials() for seen in http_other.log if seen.credentials()]
    assert [] == [s for s in http_other.log if "x-custom" in s.headers]


def test_redirect_to_another_origin_is_refused(read, make_config, http_other):
    """A 302 to another origin is not followed unless allowed."""
    config = make_config(streams={"s": {"path": "/redirect", "params": {"to": "other"}}})
    outcome = read(config, "s")
    assert isinstance(outcome.error, OriginRefused)
    assert [] == http_other.log


@pytest.mark.parametrize("auth", ["api_key-header", "api_key-query", "bearer", "oauth2"])
def test_allowed_redirect_drops_credentials(read, make_config, http_api, http_other, auth):
    """A redirect to an allowed host is followed without credentials."""
    config = make_config(
        auth=auth_variants(http_api)[auth],
        streams={"s": {"path": "/redirect", "params": {"to": "other"}, "records": "data"}},
        allowed_hosts=[f"http://{http_other.host}:{http_other.port}"],
    )
    outcome = read(config, "s")
    assert outcome.error is None
    assert [1, 2] == outcome.ids
    assert 1 == len(http_other.log)
    assert [] == http_other.log[0].credentials()


def test_same_origin_redirect_keeps_credentials(read, make_config, http_api):
    """A redirect within the API's origin is followed with credentials (the target needs them)."""
    config = make_config(
        streams={"s": {"path": "/redirect", "params": {"to": "same"}, "records": "data"}}
    )
    outcome = read(config, "s")
    assert outcome.error is None
    assert [1, 2] == outcome.ids
    assert API_KEY == http_api.log[-1].headers["x-api-key"]


def test_same_origin_redirect_keeps_the_stream_headers(read, make_config, http_api):
    """A stream's own headers (its credential among them) survive a same-origin redirect."""
    stream = {
        "path": "/redirect",
        "params": {"to": "same"},
        "records": "data",
        "headers": {"X-API-Key": API_KEY, "X-Trace": "t-1"},
    }
    outcome = read(make_config(auth={"type": "none"}, streams={"s": stream}), "s")
    assert outcome.error is None
    assert [1, 2] == outcome.ids
    target = http_api.log[-1]
    assert (API_KEY, "t-1") == (target.headers["x-api-key"], target.headers["x-trace"])


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (
            {"base_url": "http://api.example.com", "auth": {"type": "bearer", "token": "x"}},
            "base_url",
        ),
        (
            {
                "base_url": "https://api.example.com",
                "auth": {
                    "type": "oauth2_client_credentials",
                    "token_url": "http://auth.example.com/token",
                    "client_id": "c",
                    "client_secret": "s",
                },
            },
            "auth.token_url",
        ),
    ],
    ids=["api", "token_url"],
)
def test_credentials_over_plain_http_are_refused(config, field):
    """Credentials over plain http to a non-loopback host are refused up front."""
    with pytest.raises(ConfigError) as info:
        RestConnector(config)
    assert field == info.value.field


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.1.2.3"])
def test_plain_http_to_loopback_is_allowed(host):
    """Loopback is the exception to the plain-http rule."""
    connector = RestConnector(
        {"base_url": f"http://{host}:8080", "auth": {"type": "bearer", "token": "x"}}
    )
    assert "rest" == connector.id


def check_config(make_config, **changes: Any) -> dict[str, Any]:
    config = make_config(streams={"s": {"path": "/single", "records": "data"}})
    config.update(changes)
    return config


@pytest.mark.parametrize(
    ("changes", "category", "field"),
    [
        ({"check_path": "/single"}, None, None),
        ({"auth": {"type": "api_key", "key": API_KEY + "-wrong"}}, Category.AUTH, "auth"),
        ({"check_path": "/status/403"}, Category.PERMISSION, "auth"),
        ({"check_path": "/no/such/path"}, Category.NOT_FOUND, "path"),
        ({"check_path": "/status/429"}, Category.RATE_LIMITED, None),
        ({"check_path": "/status/503"}, Category.SERVER, None),
        ({"check_path": "/slow?delay=1"}, Category.NETWORK, None),
        ({"base_url": "closed-port"}, Category.NETWORK, "base_url"),
        ({"base_url": "tls-to-plain"}, Category.TLS, "verify"),
        ({"base_url": NO_SUCH_HOST}, Category.NETWORK, "base_url"),
    ],
    ids=["ok", "401", "403", "404", "429", "503", "timeout", "refused", "tls", "dns"],
)
def test_check_maps_failures_to_categories(
    make_config, http_api, registry, mode, changes, category, field
):
    """check()/acheck() map statuses and network failures to categories, never showing a secret."""
    import asyncio

    changes = dict(changes)
    if changes.get("base_url") == "closed-port":
        changes["base_url"] = f"http://127.0.0.1:{free_port()}"
    elif changes.get("base_url") == "tls-to-plain":
        changes["base_url"] = http_api.url.replace("http://", "https://")
    config = check_config(
        make_config, timeouts={"connect": 2, "read": 0.3, "write": 2, "pool": 2}, **changes
    )
    with RestConnector(config, registry=registry) as connector:
        result = connector.check() if mode == "sync" else asyncio.run(_acheck(connector))
    assert (category is None, category, field) == (result.ok, result.category, result.field)
    assert API_KEY not in json.dumps(result.to_dict())


async def _acheck(connector):
    try:
        return await connector.acheck()
    finally:
        await connector.aclose()


def test_dead_api_opens_the_breaker_with_one_clear_error(read, make_config):
    """Against a closed port the breaker opens and the read ends with CircuitOpen naming it."""
    port = free_port()
    config = make_config(
        base_url=f"http://127.0.0.1:{port}",
        streams={"s": {"path": "/single"}},
        retry={"attempts": 10, "initial": 0, "maximum": 0.01, "jitter": 0, "timeout": 30},
        breaker={"failure_threshold": 3, "reset_timeout": 60},
    )
    outcome = read(config, "s")
    assert isinstance(outcome.error, CircuitOpen)
    assert f"127.0.0.1:{port}" in str(outcome.error)
    again = read(config, "s")
    assert isinstance(again.error, CircuitOpen)


def test_unresolvable_host_ends_the_read_with_one_clear_error(read, make_config):
    """A host that does not resolve: a ConnectionFailed naming it, no httpx traceback."""
    config = make_config(
        base_url=NO_SUCH_HOST,
        streams={"s": {"path": "/single"}},
        retry={"attempts": 2, "initial": 0, "maximum": 0, "jitter": 0, "timeout": 10},
        timeouts={"connect": 2, "read": 2, "write": 2, "pool": 2},
    )
    outcome = read(config, "s")
    error = outcome.error
    assert isinstance(error, ConnectionFailed)
    assert (Category.NETWORK, "base_url") == (error.category, error.field)
    assert "cannot resolve headwater-no-such-host.invalid" in str(error)
    assert "\n" not in str(error)
    # Raised `from None`: the httpx/httpcore chain is not part of what a user sees.
    assert (None, True) == (error.__cause__, error.__suppress_context__)
    shown = "".join(traceback.format_exception(error))
    assert "httpcore" not in shown
    assert [] == outcome.batches


def test_rate_limited_connector_still_reads_everything(read, make_config):
    """A client-side rate limit slows requests down without changing what is read."""
    config = make_config(
        streams={
            "s": {
                "path": "/offset",
                "params": {"n": 30, "total": 1},
                "records": "items",
                "pagination": {
                    "type": "offset",
                    "limit": 10,
                    "total_path": "total",
                    "concurrency": 3,
                },
            }
        },
        rate_limit={"requests_per_second": 50},
    )
    assert list(range(1, 31)) == read(config, "s").ids


def test_reprs_and_dumps_never_show_literal_secrets(http_api, secrets_in):
    """A connector with literal secrets everywhere shows none of them."""
    connector = RestConnector(
        {
            "base_url": http_api.url,
            "auth": {
                "type": "oauth2_client_credentials",
                "token_url": http_api.url + "/oauth/token",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
        }
    )
    shown = [
        repr(connector),
        str(connector.config),
        connector.config.sanitized(),
        connector.config.model_dump_json(),
    ]
    assert [] == secrets_in(*shown)


#: Credentials written as plain headers / query parameters instead of an auth scheme.
CREDENTIAL_ENTRIES = {
    "header": {"headers": {"X-API-Key": API_KEY, "Accept-Language": "en"}},
    "authorization": {"headers": {"Authorization": f"Bearer {BEARER}"}},
    "query": {"params": {"api_key": API_KEY, "lang": "en"}},
    "stream-header": {"stream_headers": {"x-api-key": API_KEY}},
}


def credential_config(http_api, entries: dict[str, Any], stream: dict[str, Any]) -> dict:
    config: dict[str, Any] = {
        "base_url": http_api.url,
        "retry": {"attempts": 1},
        "streams": {"s": {**stream, "headers": entries.get("stream_headers", {})}},
    }
    config.update({k: v for k, v in entries.items() if k in ("headers", "params")})
    return config


@pytest.mark.parametrize("kind", sorted(CREDENTIAL_ENTRIES))
def test_credential_headers_and_params_are_secrets(http_api, secrets_in, kind):
    """A key in headers/params is masked when shown, yet sent to the API as written."""
    entries = CREDENTIAL_ENTRIES[kind]
    config = credential_config(http_api, entries, {"path": "/single", "records": "data"})
    with RestConnector(config) as connector:
        shown = [repr(connector), str(connector.config), connector.config.model_dump_json()]
        sanitized = connector.config.sanitized()
        assert [] == secrets_in(*shown, sanitized)
        assert [1, 2, 3] == [r["id"] for b in connector.read("s") for r in b.rows()]
    if kind in ("header", "query"):  # beside the key, an entry that carries no credential
        assert "en" in json.dumps(sanitized)  # is shown as written
    [seen] = http_api.log
    assert seen.credentials()


def test_credential_header_accepts_a_secret_reference(http_api, monkeypatch, secrets_in):
    """``X-API-Key: env:NAME`` is resolved when the connector connects, shown as the reference."""
    monkeypatch.setenv("HW_TEST_HEADER_KEY", API_KEY)
    config = credential_config(
        http_api, {"headers": {"X-API-Key": "env:HW_TEST_HEADER_KEY"}}, {"path": "/single"}
    )
    connector = RestConnector(config)
    assert "env:HW_TEST_HEADER_KEY" == connector.config.sanitized()["headers"]["X-API-Key"]
    with connector:
        assert connector.check().ok
    assert API_KEY == http_api.log[-1].headers["x-api-key"]


@pytest.mark.parametrize("kind", sorted(CREDENTIAL_ENTRIES))
def test_credential_headers_over_plain_http_are_refused(kind):
    """A key in headers/params counts as a credential for the plain-http rule."""
    config = {
        "base_url": "http://api.example.com",
        "streams": {
            "s": {"path": "/x", "headers": CREDENTIAL_ENTRIES[kind].get("stream_headers", {})}
        },
        **{k: v for k, v in CREDENTIAL_ENTRIES[kind].items() if k in ("headers", "params")},
    }
    with pytest.raises(ConfigError) as info:
        RestConnector(config)
    assert "base_url" == info.value.field
    # Headers that carry no credential do not trip the rule.
    assert RestConnector({"base_url": "http://api.example.com", "headers": {"Accept": "x"}})


@pytest.mark.parametrize("stream", [NEXT_OTHER, LINK_OTHER], ids=["next_url", "link"])
def test_credential_headers_never_reach_an_allowed_other_host(
    read, make_config, http_api, http_other, stream
):
    """Credential headers/params stay with the API when a link leads to an allowed host."""
    config = make_config(
        auth={"type": "none"},
        headers={"X-API-Key": API_KEY},
        params={"api_key": API_KEY},
        streams={"s": stream},
        allowed_hosts=[f"{http_other.host}:{http_other.port}"],
    )
    outcome = read(config, "s")
    assert outcome.error is None
    assert list(range(1, 48)) == outcome.ids
    assert http_other.log
    assert [] == [seen.credentials() for seen in http_other.log if seen.credentials()]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEADWATER_PLUGINS": "rest"}
    return subprocess.run(
        [sys.executable, "-m", "headwater", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_cli_names_an_unresolvable_host_in_one_line():
    """`headwater read` on a host that does not resolve: one error line naming it, exit != 0."""
    run = _cli(
        "read",
        NO_SUCH_HOST + "/items",
        "-c",
        "retry.attempts=1",
        "-c",
        "timeouts.connect=2",
    )
    assert 0 != run.returncode
    assert "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert 1 == len(lines), run.stderr
    assert lines[0].startswith("error: ")
    assert "headwater-no-such-host.invalid" in lines[0]


def test_cli_records_option_selects_the_records(http_api):
    """`headwater read URL --records data.items` reads a nested record list from a URL alone."""
    auth = ["-c", "auth.type=api_key", "-c", "auth.key=env:HW_TEST_API_KEY"]
    run = _cli("read", f"{http_api.url}/single?n=3&nest=1", "--records", "data.items", *auth)
    assert 0 == run.returncode, run.stderr
    assert [1, 2, 3] == [json.loads(line)["id"] for line in run.stdout.splitlines()]
    clash = _cli("read", f"{http_api.url}/single", "--records", "a", "-c", "records=b", *auth)
    assert 0 != clash.returncode
    assert "--records and -c records= disagree" in clash.stderr


def test_cli_reads_a_url_and_shows_no_secret_on_failure(http_api, secrets_in):
    """`headwater read URL` works from a URL alone; a failing run prints no secret."""
    url = f"{http_api.url}/single?n=3"
    good = _cli(
        "read",
        url,
        "-c",
        "records=data",
        "-c",
        "auth.type=api_key",
        "-c",
        "auth.key=env:HW_TEST_API_KEY",
    )
    assert 0 == good.returncode, good.stderr
    assert [1, 2, 3] == [json.loads(line)["id"] for line in good.stdout.splitlines()]
    bad = _cli(
        "read",
        url,
        "-c",
        "records=data",
        "-c",
        "auth.type=api_key",
        "-c",
        f"auth.key={API_KEY}-wrong",
    )
    assert 0 != bad.returncode
    assert "401" in bad.stderr
    assert [] == secrets_in(bad.stdout, bad.stderr)
