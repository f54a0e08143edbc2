"""
OAuth2 against a real, OpenID-certified authorization server (oidc-provider, started by
tests/fix_oidc.py): every client authentication method, credentials that need encoding,
3-second tokens, rotating refresh tokens, discovery, and what the user sees on failure.
No token endpoint here is hand-written.
"""

from __future__ import annotations

import json
import os
import select
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from headwater import AuthFailed, ConfigError, TLSFailure
from headwater.toolkit import breaker_for
from headwater_rest import RestConnector
from headwater_rest._auth import forget_metadata, well_known_urls
from headwater_rest._errors import TokenEndpointError
from headwater_rest._http import origin_of, origin_text
from tests.fix_oidc import (
    BASIC_ID,
    BASIC_SECRET,
    JWT_SECRET,
    JWT_SECRET_ID,
    KEY_ID,
    OIDC_SECRETS,
    POST_ID,
    POST_SECRET,
    REFRESH_ID,
    REFRESH_SECRET,
    RESOURCE,
    TOKEN_TTL,
    OidcServer,
)
from tests.fix_services import free_port

ALL_IDS = list(range(1, 51))
FAST_RETRY = {"attempts": 2, "initial": 0.0, "maximum": 0.01, "jitter": 0.0, "timeout": 10}
STREAM = {
    "path": "/items",
    "records": "items",
    "pagination": {"type": "page", "total_pages_path": "total_pages"},
}


@pytest.fixture(autouse=True)
def _oidc_secrets_nowhere(caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest):
    """No client secret or private key of the server's clients may reach any log."""
    forget_metadata()
    yield
    secrets = list(OIDC_SECRETS)
    if "oidc_server" in request.fixturenames:  # pure-logic tests run without the server
        keys = request.getfixturevalue("oidc_server").keys
        secrets += [keys.rsa_pem.splitlines()[5], keys.ec_pem.splitlines()[2]]
    assert [] == [s for s in secrets if s in caplog.text]


@pytest.fixture
def env_secrets(monkeypatch: pytest.MonkeyPatch, oidc_server: OidcServer) -> None:
    monkeypatch.setenv("HW_OIDC_BASIC_SECRET", BASIC_SECRET)
    monkeypatch.setenv("HW_OIDC_POST_SECRET", POST_SECRET)
    monkeypatch.setenv("HW_OIDC_JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("HW_OIDC_REFRESH_SECRET", REFRESH_SECRET)
    monkeypatch.setenv("HW_OIDC_RSA_KEY", oidc_server.keys.rsa_pem)
    monkeypatch.setenv("HW_OIDC_EC_KEY", oidc_server.keys.ec_pem)


def config(server: OidcServer, auth: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    auth = {"token_url": server.token_url, **auth} if "issuer" not in auth else auth
    return {
        "base_url": server.api_url,
        "auth": auth,
        "streams": {"items": STREAM, **overrides.pop("streams", {})},
        "retry": FAST_RETRY,
        "timeouts": {"connect": 2, "read": 10, "write": 5, "pool": 5},
        **overrides,
    }


AUTH_METHODS = {
    "client_secret_basic": {
        "type": "oauth2_client_credentials",
        "client_id": BASIC_ID,
        "client_secret": "env:HW_OIDC_BASIC_SECRET",
    },
    "client_secret_post": {
        "type": "oauth2_client_credentials",
        "client_id": POST_ID,
        "client_secret": "env:HW_OIDC_POST_SECRET",
        "client_auth": "body",
    },
    "client_secret_jwt": {
        "type": "oauth2_client_credentials",
        "client_id": JWT_SECRET_ID,
        "client_secret": "env:HW_OIDC_JWT_SECRET",
        "client_auth": "client_secret_jwt",
    },
    "private_key_jwt-RS256": {
        "type": "oauth2_client_credentials",
        "client_id": KEY_ID,
        "client_auth": "private_key_jwt",
        "private_key": "env:HW_OIDC_RSA_KEY",
        "key_id": "rsa",
    },
    "private_key_jwt-PS256": {
        "type": "oauth2_client_credentials",
        "client_id": KEY_ID,
        "client_auth": "private_key_jwt",
        "private_key": "env:HW_OIDC_RSA_KEY",
        "key_id": "rsa",
        "algorithm": "PS256",
    },
    "private_key_jwt-ES256": {
        "type": "oauth2_client_credentials",
        "client_id": KEY_ID,
        "client_auth": "private_key_jwt",
        "private_key": "env:HW_OIDC_EC_KEY",
        "key_id": "ec",
        "algorithm": "ES256",
    },
}


@pytest.mark.parametrize("method", list(AUTH_METHODS))
def test_each_client_auth_method_reads_every_record(read, oidc_server, env_secrets, method):
    """client_secret_basic here has an id with ``:`` and a secret with ``+ % / =``."""
    outcome = read(config(oidc_server, AUTH_METHODS[method]), "items")
    assert outcome.error is None, outcome.error
    assert ALL_IDS == outcome.ids


def test_unencoded_basic_credentials_show_the_servers_reason(read, oidc_server, env_secrets):
    """The pre-RFC behaviour, kept as an explicit setting: the server says why it refuses."""
    auth = {**AUTH_METHODS["client_secret_basic"], "client_auth": "basic_unencoded"}
    outcome = read(config(oidc_server, auth), "items")
    error = outcome.error
    assert isinstance(error, TokenEndpointError)
    assert "invalid_request" in str(error)
    assert "not properly encoded" in str(error)
    assert "auth.client_auth" == error.field
    assert "client_auth: basic" in (error.hint or "")
    assert [] == outcome.records


def test_invalid_scope_names_auth_scope(read, oidc_server, env_secrets):
    """A scope the client may not have: the server's invalid_scope, blamed on auth.scope."""
    auth = {**AUTH_METHODS["client_secret_post"], "scope": "api:admin"}
    error = read(config(oidc_server, auth), "items").error
    assert isinstance(error, TokenEndpointError)
    assert "invalid_scope" in str(error)
    assert "requested scope is not allowed" in str(error)
    assert "auth.scope" == error.field


def test_wrong_secret_is_invalid_client_with_nothing_secret_shown(read, oidc_server, monkeypatch):
    """A wrong secret: invalid_client on auth.client_secret, neither secret shown."""
    wrong = "wrong+secret%value/=="
    monkeypatch.setenv("HW_OIDC_BASIC_SECRET", wrong)
    outcome = read(config(oidc_server, AUTH_METHODS["client_secret_basic"]), "items")
    error = outcome.error
    assert isinstance(error, AuthFailed)
    assert "invalid_client" in str(error)
    assert "auth.client_secret" == error.field
    shown = f"{error} {error.hint} {error!r}"
    assert wrong not in shown
    assert BASIC_SECRET not in shown


def test_unreachable_token_endpoint_is_blamed_on_token_url_not_the_api(
    oidc_server, env_secrets, registry
):
    """A dead token endpoint: an auth failure on auth.token_url; the API's breaker stays closed."""
    dead = f"http://127.0.0.1:{free_port()}/token"
    cfg = config(oidc_server, {**AUTH_METHODS["client_secret_post"], "token_url": dead})
    with RestConnector(cfg, registry=registry) as connector:
        with pytest.raises(TokenEndpointError) as caught:
            list(connector.read("items"))
        result = connector.check()
    assert "cannot connect" in str(caught.value)
    assert "/token" in str(caught.value)
    assert "auth.token_url" == caught.value.field
    assert "auth.token_url" == result.field
    assert "auth" == result.category
    # Only the token endpoint failed: the API's breaker counted nothing; the token
    # endpoint's own breaker counted its failed tries.
    api = breaker_for(origin_text(origin_of(oidc_server.api_url)))
    assert ("closed", 0) == (api.state, api.failures)
    token = breaker_for("token endpoint " + origin_text(origin_of(dead)))
    assert token.failures >= 2


def test_wrong_token_url_is_blamed_on_token_url(read, oidc_server, env_secrets):
    """A token URL where the server has no endpoint: auth.token_url, not the secret."""
    auth = {**AUTH_METHODS["client_secret_post"], "token_url": oidc_server.issuer + "/oauth/tokn"}
    error = read(config(oidc_server, auth), "items").error
    assert isinstance(error, TokenEndpointError)
    assert "404" in str(error)
    assert "auth.token_url" == error.field


def test_token_expiring_mid_read_is_renewed_and_nothing_is_lost(read, oidc_server, env_secrets):
    """Five pages of 0.9 s outlast a 3-second token: renewed before it expires, no 401."""
    before = oidc_server.grants(POST_ID)
    refused_before = oidc_server.stats()["api"].get("401", 0)
    stream = {**STREAM, "params": {"delay_ms": 900}}
    outcome = read(
        config(oidc_server, AUTH_METHODS["client_secret_post"], streams={"items": stream}), "items"
    )
    assert outcome.error is None, outcome.error
    assert ALL_IDS == outcome.ids
    assert oidc_server.grants(POST_ID) - before >= 2
    # Renewed ahead of expiry (leeway), not after the API refused an expired token.
    assert refused_before == oidc_server.stats()["api"].get("401", 0)


def test_one_token_for_concurrent_readers(oidc_server, env_secrets, registry):
    """Eight threads reading through one connector share each token the server issues."""
    before = oidc_server.grants(JWT_SECRET_ID)
    cfg = config(oidc_server, AUTH_METHODS["client_secret_jwt"])
    results: list[list[Any]] = []
    started = time.monotonic()
    with RestConnector(cfg, registry=registry) as connector:

        def work() -> None:
            results.append([r["id"] for b in connector.read("items") for r in b.rows()])

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        fetches = connector.http.auth.fetches  # type: ignore[union-attr]
    elapsed = time.monotonic() - started
    assert [ALL_IDS] * 8 == results
    issued = oidc_server.grants(JWT_SECRET_ID) - before
    assert fetches == issued
    # One token for all eight threads: a second one only if the read outlived the first
    # (3-second tokens, renewed a tenth of their lifetime early, on a busy machine).
    assert issued <= 1 + int(elapsed / (TOKEN_TTL * 0.9))
    if elapsed < TOKEN_TTL * 0.9:
        assert 1 == issued


def test_one_token_for_concurrent_async_readers(oidc_server, env_secrets, registry):
    """Eight concurrent aread()s on one connector and event loop share one token."""
    import asyncio

    before = oidc_server.grants(POST_ID)
    cfg = config(oidc_server, AUTH_METHODS["client_secret_post"])

    async def run() -> list[list[Any]]:
        async with RestConnector(cfg, registry=registry) as connector:

            async def one() -> list[Any]:
                return [r["id"] async for b in connector.aread("items") for r in b.rows()]

            return list(await asyncio.gather(*(one() for _ in range(8))))

    started = time.monotonic()
    results = asyncio.run(run())
    elapsed = time.monotonic() - started
    assert [ALL_IDS] * 8 == results
    issued = oidc_server.grants(POST_ID) - before
    assert issued <= 1 + int(elapsed / (TOKEN_TTL * 0.9))
    if elapsed < TOKEN_TTL * 0.9:
        assert 1 == issued


def test_resource_indicator_through_extra_params(read, oidc_server, env_secrets):
    """An RFC 8707 resource in extra_params gives a token the resource's API accepts."""
    stream = {**STREAM, "path": "/resource-items"}
    auth = {**AUTH_METHODS["client_secret_post"], "extra_params": {"resource": RESOURCE}}
    outcome = read(config(oidc_server, auth, streams={"r": stream}), "r")
    assert outcome.error is None, outcome.error
    assert ALL_IDS == outcome.ids
    # Without it the token is not for this API (the check is real).
    refused = read(
        config(oidc_server, AUTH_METHODS["client_secret_post"], streams={"r": stream}), "r"
    )
    assert "403" in str(refused.error)


# --- discovery ----------------------------------------------------------------------------------


def test_issuer_alone_finds_the_token_endpoint_once_per_process(read, oidc_server, env_secrets):
    """issuer: alone finds the token endpoint; two connectors fetch the metadata once."""
    auth = {**AUTH_METHODS["client_secret_jwt"], "issuer": oidc_server.issuer}

    def metadata_requests() -> int:
        paths = oidc_server.stats()["paths"]
        return sum(n for path, n in paths.items() if path.startswith("/.well-known/"))

    seen = metadata_requests()
    for _ in range(2):
        outcome = read(config(oidc_server, auth), "items")
        assert outcome.error is None, outcome.error
        assert ALL_IDS == outcome.ids
    assert 1 == metadata_requests() - seen


def test_metadata_locations_follow_rfc_8414_then_openid_discovery():
    """RFC 8414 inserts the well-known segment before the issuer's path; OIDC appends it."""
    assert [
        "https://as.example/.well-known/oauth-authorization-server/tenant/x",
        "https://as.example/tenant/x/.well-known/openid-configuration",
    ] == well_known_urls("https://as.example/tenant/x/")


def test_issuer_with_private_key_jwt_and_issuer_audience(read, oidc_server, env_secrets):
    """private_key_jwt with the issuer as the assertion's audience is accepted."""
    auth = {
        **AUTH_METHODS["private_key_jwt-RS256"],
        "issuer": oidc_server.issuer,
        "assertion_audience": "issuer",
    }
    outcome = read(config(oidc_server, auth), "items")
    assert outcome.error is None, outcome.error
    assert ALL_IDS == outcome.ids


def test_issuer_without_metadata_is_a_clear_config_error(read, oidc_server, env_secrets):
    """No metadata at either location: a config error on auth.issuer naming both answers."""
    auth = {**AUTH_METHODS["client_secret_post"], "issuer": oidc_server.issuer + "/nowhere"}
    error = read(config(oidc_server, auth), "items").error
    assert isinstance(error, ConfigError)
    assert "auth.issuer" == error.field
    assert "no authorization server metadata" in str(error)
    assert "404" in str(error)


def test_unreachable_issuer_is_blamed_on_auth_issuer(read, oidc_server, env_secrets):
    """An issuer nobody answers for: an auth failure on auth.issuer, not on base_url."""
    auth = {**AUTH_METHODS["client_secret_post"], "issuer": f"http://127.0.0.1:{free_port()}"}
    error = read(config(oidc_server, auth), "items").error
    assert isinstance(error, TokenEndpointError)
    assert "cannot connect" in str(error)
    assert "auth.issuer" == error.field


def test_issuer_mismatch_is_a_clear_config_error(read, oidc_server, env_secrets):
    # The same server under another name: its metadata names 127.0.0.1, not localhost.
    """Metadata naming another issuer is refused (RFC 8414 §3.3) on auth.issuer."""
    other_name = oidc_server.issuer.replace("127.0.0.1", "localhost")
    auth = {**AUTH_METHODS["client_secret_post"], "issuer": other_name}
    error = read(config(oidc_server, auth), "items").error
    assert isinstance(error, ConfigError)
    assert "auth.issuer" == error.field
    assert oidc_server.issuer in str(error)


# --- refresh tokens -------------------------------------------------------------------------------


def refresh_auth(reference: str) -> dict[str, Any]:
    return {
        "type": "oauth2_refresh_token",
        "client_id": REFRESH_ID,
        "client_secret": "env:HW_OIDC_REFRESH_SECRET",
        "refresh_token": reference,
    }


def test_rotated_refresh_token_carries_over_to_the_next_process(oidc_server, env_secrets, tmp_path):
    """Each process's rotated refresh token is written back (0600) and used by the next."""
    token_file = tmp_path / "refresh-token"
    first = oidc_server.new_refresh_token()
    token_file.write_text(first)
    cfg = config(oidc_server, refresh_auth(f"file:{token_file}"))
    script = textwrap.dedent(
        """
        import json, sys
        from headwater_rest import RestConnector
        with RestConnector(json.loads(sys.argv[1])) as connector:
            ids = [r["id"] for b in connector.read("items") for r in b.rows()]
        print(json.dumps(ids))
        """
    )
    seen = [first]
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-c", script, json.dumps(cfg)],
            capture_output=True, text=True, timeout=120, check=False, env=os.environ.copy(),
        )  # fmt: skip
        assert 0 == proc.returncode, proc.stderr[-2000:]
        assert ALL_IDS == json.loads(proc.stdout.splitlines()[-1])
        rotated = token_file.read_text()
        assert rotated not in seen  # the server rotated it, and it was written back
        seen.append(rotated)
        assert rotated not in proc.stdout + proc.stderr
    assert 0o600 == token_file.stat().st_mode & 0o777
    # Written by rename from a temporary file beside it, which is gone.
    assert ["refresh-token"] == sorted(p.name for p in tmp_path.iterdir())


def test_revoked_refresh_token_names_the_fix_and_shows_nothing(
    read, oidc_server, env_secrets, tmp_path
):
    """A revoked refresh token: invalid_grant on auth.refresh_token, the fix named, nothing shown."""
    token = oidc_server.new_refresh_token()
    oidc_server.revoke(token)
    token_file = tmp_path / "refresh-token"
    token_file.write_text(token)
    outcome = read(config(oidc_server, refresh_auth(f"file:{token_file}")), "items")
    error = outcome.error
    assert isinstance(error, TokenEndpointError)
    assert "invalid_grant" in str(error)
    assert "auth.refresh_token" == error.field
    assert "sign in again" in (error.hint or "")
    shown = f"{error} {error.hint} {error!r}"
    assert token not in shown
    assert REFRESH_SECRET not in shown
    assert token == token_file.read_text()  # nothing was written over it


# --- keys from the keyring ------------------------------------------------------------------------


def test_private_key_jwt_with_a_key_from_the_keyring(read, oidc_server, memory_keyring):
    """private_key: keyring:... signs assertions the server accepts."""
    memory_keyring.set_password("headwater-test-oidc", "signing-key", oidc_server.keys.ec_pem)
    auth = {
        **AUTH_METHODS["private_key_jwt-ES256"],
        "private_key": "keyring:headwater-test-oidc/signing-key",
    }
    outcome = read(config(oidc_server, auth), "items")
    assert outcome.error is None, outcome.error
    assert ALL_IDS == outcome.ids


def test_private_key_that_does_not_fit_the_algorithm_is_a_config_error(
    read, oidc_server, env_secrets
):
    """An RSA key with algorithm ES256 is a config error on auth.algorithm."""
    auth = {**AUTH_METHODS["private_key_jwt-RS256"], "algorithm": "ES256"}
    error = read(config(oidc_server, auth), "items").error
    assert isinstance(error, ConfigError)
    assert "auth.algorithm" == error.field


def test_key_unknown_to_the_server_is_invalid_client_on_private_key(
    read, oidc_server, env_secrets, tmp_path
):
    """A key the server does not know: invalid_client, blamed on auth.private_key."""
    from tests.fix_oidc import ClientKeys

    stranger = tmp_path / "stranger.pem"
    stranger.write_text(ClientKeys.generate().rsa_pem)
    auth = {**AUTH_METHODS["private_key_jwt-RS256"], "private_key": f"file:{stranger}"}
    error = read(config(oidc_server, auth), "items").error
    assert isinstance(error, TokenEndpointError)
    assert "invalid_client" in str(error)
    assert "auth.private_key" == error.field


# --- nothing private of other libraries -----------------------------------------------------------


#: A named tuple's documented methods start with ``_`` only to keep clear of field names.
NAMEDTUPLE_API = frozenset({"_replace", "_asdict", "_make", "_fields", "_field_defaults"})


def test_no_private_attribute_of_another_library_is_used():
    """``httpx.BasicAuth(...)._auth_header`` and the like break on any upgrade of that library."""
    import ast

    source = Path(__file__).parent.parent / "src" / "headwater_rest"
    trees = {path.name: ast.parse(path.read_text()) for path in sorted(source.glob("*.py"))}
    # Private members of our own classes and modules are ours to use.
    ours = {"self", "cls"} | {
        node.name for tree in trees.values() for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }  # fmt: skip
    found = []
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            attribute = node.attr
            if not attribute.startswith("_") or attribute.startswith("__"):
                continue
            if attribute in NAMEDTUPLE_API:
                continue
            owner = node.value
            while isinstance(owner, ast.Attribute):
                owner = owner.value
            if isinstance(owner, ast.Name) and owner.id in ours:
                continue
            if isinstance(owner, ast.Call) and ast.unparse(owner.func) == "super":
                continue
            found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    assert [] == found


# --- mutual TLS -----------------------------------------------------------------------------------


class MtlsProxy:
    """
    A loopback TLS server that requires a client certificate signed by the test CA and
    pipes each connection to the oidc-provider (its API and its token endpoint).
    """

    def __init__(self, certs: Path, target_port: int) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certs / "server.crt", certs / "server.key")
        self.context.load_verify_locations(certs / "ca.crt")
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        #: The client certificate subject of every connection that completed its handshake.
        self.clients: list[str] = []
        self.refused = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            self.refused += 1
            conn.close()
            return
        subject = dict(item[0] for item in (tls.getpeercert() or {}).get("subject", ()))
        self.clients.append(str(subject.get("commonName")))
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        try:
            while True:
                ready = [tls] if tls.pending() else select.select([tls, upstream], [], [], 5)[0]
                if not ready:
                    return
                for source in ready:
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is tls else tls).sendall(data)
        except (ssl.SSLError, OSError):
            return
        finally:
            upstream.close()
            tls.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def mtls(tmp_path, oidc_server):
    from tests.fix_certs import make_certs, make_client_cert, openssl_available

    if not openssl_available():
        from tests.fix_services import service_unavailable

        service_unavailable("the openssl tool is not on PATH")
    make_certs(tmp_path)
    make_client_cert(tmp_path, "client", cn="headwater-client")
    proxy = MtlsProxy(tmp_path, origin_of(oidc_server.issuer)[2])
    yield proxy, tmp_path
    proxy.close()


def test_mutual_tls_for_the_api_and_the_token_endpoint(
    read, mode, oidc_server, env_secrets, mtls, monkeypatch
):
    """Without a client certificate nothing passes; with tls.client_cert both clients present it."""
    proxy, certs = mtls
    monkeypatch.setenv("HW_OIDC_CLIENT_KEY", (certs / "client.key").read_text())
    auth = {**AUTH_METHODS["client_secret_post"], "token_url": proxy.url + "/token"}
    base = {
        **config(oidc_server, auth),
        "base_url": proxy.url + "/api",
        "verify": str(certs / "ca.crt"),
    }
    before = oidc_server.grants(POST_ID)
    without = read(base, "items")
    # The server's refusal of a connection without a certificate names the setting.
    error = without.error
    assert error is not None
    if mode == "sync":
        assert isinstance(error, TLSFailure)
        assert "tls.client_cert" == error.field
        assert "certificate required" in str(error)
    else:  # the async stack often keeps only "the connection dropped"
        assert "tls.client_cert" in f"{error.field} {error.hint}"
    assert [] == without.ids
    assert oidc_server.grants(POST_ID) == before  # the token request was refused too
    tls = {"client_cert": f"file:{certs / 'client.crt'}", "client_key": "env:HW_OIDC_CLIENT_KEY"}
    outcome = read({**base, "tls": tls}, "items")
    assert outcome.error is None, outcome.error
    assert ALL_IDS == outcome.ids
    assert oidc_server.grants(POST_ID) == before + 1  # through the proxy, with the certificate
    # The token client and the API client each connected with the certificate.
    assert len(proxy.clients) >= 2
    assert {"headwater-client"} == set(proxy.clients)


def test_mutual_tls_key_that_does_not_fit_is_a_config_error(read, oidc_server, env_secrets, mtls):
    """A key that is not the certificate's: a config error on tls.*, no key shown."""
    proxy, certs = mtls
    from tests.fix_certs import make_client_cert

    make_client_cert(certs, "stranger", cn="stranger")
    tls = {
        "client_cert": f"file:{certs / 'client.crt'}",
        "client_key": f"file:{certs / 'stranger.key'}",
    }
    cfg = {
        **config(oidc_server, AUTH_METHODS["client_secret_post"]),
        "base_url": proxy.url + "/api",
        "verify": str(certs / "ca.crt"),
        "tls": tls,
    }
    error = read(cfg, "items").error
    assert isinstance(error, ConfigError)
    assert error.field in ("tls.client_key", "tls.client_cert")
    assert "BEGIN" not in str(error)


# --- pure logic: what goes out, what is shown -----------------------------------------------------


def test_basic_credentials_are_form_urlencoded_before_base64():
    """client_secret_basic encodes id and secret (RFC 6749 §2.3.1); basic_unencoded does not."""
    import base64

    from headwater_rest._auth import basic_credentials

    header = basic_credentials("svc:reader", "a+b %2F/c=")
    assert "svc%3Areader:a%2Bb+%252F%2Fc%3D" == base64.b64decode(header[6:]).decode()
    raw = basic_credentials("svc:reader", "a+b", encode=False)
    assert "svc:reader:a+b" == base64.b64decode(raw[6:]).decode()


def test_client_assertion_claims_and_a_short_hs256_secret(caplog):
    """Fresh jti per request, iat/exp, aud = token endpoint; a short secret is said once."""
    import jwt

    from headwater_rest._auth import make_client_credentials

    secrets = {"client_secret": "short-secret"}
    auth = make_client_credentials(
        {
            "token_url": "https://as.example/oauth/token",
            "client_id": "cid",
            "client_secret": "env:X",
            "client_auth": "client_secret_jwt",
        },
        secrets.__getitem__,
    )
    assert 1 == sum("RFC 7518" in r.getMessage() for r in caplog.records)
    claims = []
    for _ in range(2):
        request = auth._token_request(
            "https://as.example/oauth/token"
        )  # pytest: warnings are errors
        form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
        assert (
            "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
            == form["client_assertion_type"]
        )
        assert "client_secret" not in form
        with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):  # decoding here, not ours
            claims.append(
                jwt.decode(
                    form["client_assertion"],
                    b"short-secret",
                    algorithms=["HS256"],
                    audience="https://as.example/oauth/token",
                )
            )
    assert claims[0]["jti"] != claims[1]["jti"]
    for c in claims:
        assert ("cid", "cid") == (c["iss"], c["sub"])
        assert 0 < c["exp"] - c["iat"] <= 60


def test_error_description_is_shortened_and_masked():
    """The server's error_description is shown shortened and with secrets masked."""
    import httpx

    from headwater.toolkit import register_secret
    from headwater_rest._auth import ClientCredentials

    leaked = "leaked-Xy7-secret-value"
    register_secret(leaked)
    auth = ClientCredentials(
        token_url="https://as.example/token",
        secret=lambda field: "s",
        client_id="cid",
        has_client_secret=True,
    )
    response = httpx.Response(
        401, json={"error": "invalid_client", "error_description": f"{leaked} " + "x" * 900}
    )
    with pytest.raises(TokenEndpointError) as caught:
        auth._accept(response)
    message = str(caught.value)
    assert "invalid_client" in message
    assert leaked not in message
    assert len(message) < 300
    assert "auth.client_secret" == caught.value.field


def test_metadata_without_the_chosen_method_is_a_config_error():
    """Metadata not listing the chosen client_auth is a config error naming what it accepts."""
    from headwater_rest._auth import ClientCredentials

    auth = ClientCredentials(
        token_url=None,
        issuer="https://as.example",
        secret=lambda field: "s",
        client_id="cid",
        has_client_secret=True,
        client_auth="body",
    )
    with pytest.raises(ConfigError) as caught:
        auth._use_metadata(
            {
                "issuer": "https://as.example",
                "token_endpoint": "https://as.example/token",
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }
        )
    assert "auth.client_auth" == caught.value.field
    assert "private_key_jwt" in str(caught.value)


def test_plain_http_issuer_is_refused(registry):
    """A plain-http issuer off loopback is refused before anything is sent."""
    cfg = {
        "base_url": "https://api.example.com",
        "auth": {**AUTH_METHODS["client_secret_post"], "issuer": "http://as.example.com"},
    }
    with pytest.raises(ConfigError) as caught:
        RestConnector(cfg, registry=registry)
    assert "auth.issuer" == caught.value.field


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (
            {"type": "oauth2_client_credentials", "client_id": "c", "client_secret": "s"},
            "token_url or issuer",
        ),
        (
            {
                "type": "oauth2_client_credentials",
                "client_id": "c",
                "token_url": "https://a/t",
                "client_auth": "private_key_jwt",
            },
            "needs private_key",
        ),
        (
            {"type": "oauth2_client_credentials", "client_id": "c", "token_url": "https://a/t"},
            "needs client_secret",
        ),
    ],
)
def test_incomplete_oauth_settings_are_refused(auth, message, registry):
    """Missing token_url/issuer, private_key or client_secret: config errors on auth."""
    with pytest.raises(ConfigError) as caught:
        RestConnector({"base_url": "https://api.example.com", "auth": auth}, registry=registry)
    assert message in str(caught.value)
    assert (caught.value.field or "").startswith("auth")


def test_cli_debug_output_holds_no_secret(oidc_server, env_secrets, tmp_path, monkeypatch):
    """``headwater --debug check / read``, refused and accepted: no secret in any output."""
    env = {**os.environ, "HEADWATER_SOURCES_FILE": str(tmp_path / "sources.toml")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "headwater", *args],
            capture_output=True, text=True, timeout=120, check=False, env=env,
        )  # fmt: skip

    for name, auth in (
        ("basic", AUTH_METHODS["client_secret_basic"]),
        ("keyjwt", AUTH_METHODS["private_key_jwt-RS256"]),
    ):
        cfg = config(oidc_server, auth)
        added = cli("sources", "add", name, "rest", "--no-test", "--config-json", json.dumps(cfg))
        assert 0 == added.returncode, added.stderr
    outputs = []
    for name in ("basic", "keyjwt"):
        check = cli("--debug", "check", name)
        assert 0 == check.returncode, check.stdout + check.stderr
        read = cli("--debug", "read", name, "items")
        assert 0 == read.returncode, read.stderr[-2000:]
        assert ALL_IDS == [json.loads(line)["id"] for line in read.stdout.splitlines()]
        outputs += [check.stdout, check.stderr, read.stderr]
    env["HW_OIDC_BASIC_SECRET"] = "wrong+secret/%="
    refused = cli("--debug", "read", "basic", "items")
    assert 1 == refused.returncode
    assert "invalid_client" in refused.stderr
    outputs += [refused.stdout, refused.stderr]
    text = "\n".join(outputs)
    pem_lines = [line for line in oidc_server.keys.rsa_pem.splitlines() if "-----" not in line]
    assert [] == [s for s in [*OIDC_SECRETS, "wrong+secret/%=", *pem_lines] if s in text]


def test_dump_without_defaults_reads_back_as_the_same_config():
    """A saved source leaves defaults out; auth and pagination must still name their type."""
    from headwater_rest import RestConfig

    model = RestConfig.model_validate(
        {
            "base_url": "https://api.example.com",
            "auth": {**AUTH_METHODS["private_key_jwt-ES256"], "issuer": "https://as.example"},
            "streams": {"items": STREAM},
        }
    )
    saved = model.model_dump(mode="json", exclude_defaults=True)
    assert "oauth2_client_credentials" == saved["auth"]["type"]
    assert "page" == saved["streams"]["items"]["pagination"]["type"]
    assert model == RestConfig.model_validate(saved)
