"""
The built-in auth schemes, each an ``httpx.Auth``.

Factories have the signature core's ``register_auth_schemes`` hook documents:
``make(config, secret) -> httpx.Auth`` where ``config`` is the auth mapping minus
``type`` and ``secret(field)`` resolves the secret in that field at connect time.

The OAuth2 schemes share one token per auth object (so per connector): the first
request that needs a token fetches it while concurrent requests wait on a lock (a
thread lock for sync requests, an asyncio lock per event loop for async ones), the token
is reused until shortly before it expires, and a 401 from the API refreshes it once and
replays the request once. The token exchange itself is written once, sans-I/O, as the
generator `_OAuth2._exchange`, which both httpx auth flows drive.

This module imports httpx at the top; only the connector imports it, never ``hooks``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any, Final

import httpx

from headwater import (
    AuthFailed,
    ConfigError,
    ConnectorError,
    Secret,
    error_for_status,
    get_logger,
    parse_retry_after,
    register_secret,
)
from headwater_rest.__about__ import __version__

logger = get_logger("headwater_rest.auth")

SecretGetter = Callable[[str], str]

#: keyring service under which cached access tokens are kept (``token_cache: keyring``).
KEYRING_SERVICE: Final = "headwater-rest-token"


class HeaderAuth(httpx.Auth):
    """Sets one header (``Authorization: Bearer ...``, ``X-API-Key: ...``)."""

    def __init__(self, name: str, value: str) -> None:
        self._name = name
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self._name] = self._value
        yield request

    def __repr__(self) -> str:
        return f"HeaderAuth({self._name!r}, '***')"


class QueryAuth(httpx.Auth):
    """Adds one query parameter (``?api_key=...``)."""

    def __init__(self, name: str, value: str) -> None:
        self._name = name
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.url = request.url.copy_merge_params({self._name: self._value})
        yield request

    def __repr__(self) -> str:
        return f"QueryAuth({self._name!r}, '***')"


class _Basic(httpx.BasicAuth):
    def __repr__(self) -> str:
        return "BasicAuth('***')"


# --- factories for the simple schemes -------------------------------------------------------


def make_none(config: Mapping[str, Any], secret: SecretGetter) -> httpx.Auth:
    """``type: none``."""
    return httpx.Auth()


def make_bearer(config: Mapping[str, Any], secret: SecretGetter) -> httpx.Auth:
    """``type: bearer`` — ``token``."""
    return HeaderAuth("Authorization", f"Bearer {secret('token')}")


def make_api_key(config: Mapping[str, Any], secret: SecretGetter) -> httpx.Auth:
    """``type: api_key`` — ``key``, ``name``, ``location`` (header/query), ``prefix``."""
    name = str(config.get("name") or "X-API-Key")
    key = secret("key")
    if config.get("location", "header") == "query":
        return QueryAuth(name, key)
    return HeaderAuth(name, f"{config.get('prefix') or ''}{key}")


def make_basic(config: Mapping[str, Any], secret: SecretGetter) -> httpx.Auth:
    """``type: basic`` — ``username``, ``password``."""
    return _Basic(str(config["username"]), secret("password"))


# --- OAuth2 -----------------------------------------------------------------------------------


class TokenCache:
    """Where access tokens outlive the process: nowhere by default."""

    def load(self, key: str) -> tuple[str, float] | None:
        """A cached ``(token, expires_at)`` (epoch seconds), or ``None``."""
        return None

    def save(self, key: str, token: str, expires_at: float) -> None:
        """Keep a token until ``expires_at``."""


class KeyringTokenCache(TokenCache):
    """Access tokens kept in the OS keyring, so separate processes reuse them until expiry."""

    def load(self, key: str) -> tuple[str, float] | None:
        try:
            import keyring

            raw = keyring.get_password(KEYRING_SERVICE, key)
        except Exception as exc:
            logger.debug("token cache: keyring unavailable (%s)", type(exc).__name__)
            return None
        if not raw:
            return None
        try:
            data = json.loads(raw)
            token, expires_at = str(data["access_token"]), float(data["expires_at"])
        except (ValueError, KeyError, TypeError):
            return None
        register_secret(token)
        return token, expires_at

    def save(self, key: str, token: str, expires_at: float) -> None:
        try:
            import keyring

            keyring.set_password(
                KEYRING_SERVICE,
                key,
                json.dumps({"access_token": token, "expires_at": expires_at}),
            )
        except Exception as exc:
            logger.debug("token cache: cannot store in keyring (%s)", type(exc).__name__)


class _OAuth2(httpx.Auth):
    """Shared machinery of the OAuth2 grants: cache, lock, expiry, 401 → refresh once."""

    #: The config field blamed when the token endpoint refuses us.
    secret_field = "auth.client_secret"  # noqa: S105  a field name

    def __init__(
        self,
        *,
        token_url: str,
        secret: SecretGetter,
        client_id: str | None,
        has_client_secret: bool,
        scope: str | None = None,
        audience: str | None = None,
        client_auth: str = "basic",
        leeway: float = 30.0,
        extra_params: Mapping[str, str] | None = None,
        cache: TokenCache | None = None,
        subject: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token_url = token_url
        self._secret = secret
        self.client_id = client_id
        self._has_client_secret = has_client_secret
        self.scope = scope
        self.audience = audience
        self.client_auth = client_auth
        self.leeway = leeway
        self.extra_params = dict(extra_params or {})
        self._cache = cache or TokenCache()
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._renew_at = 0.0
        #: How many token requests this object made (tests and diagnostics read it).
        self.fetches = 0
        self._lock = threading.Lock()
        self._alocks_guard = threading.Lock()
        self._alocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        # Whose token it is: the same client with other grant parameters, or on behalf of
        # another user (``subject``: which refresh token), must not share a cached token.
        self._cache_key = hashlib.sha256(
            "\0".join(
                [
                    token_url,
                    client_id or "",
                    scope or "",
                    audience or "",
                    json.dumps(sorted(self.extra_params.items())),
                    subject,
                ]
            ).encode()
        ).hexdigest()[:32]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token_url={self.token_url!r}, client_id={self.client_id!r})"

    # --- the token, sans-I/O ----------------------------------------------------------------

    def _valid(self) -> str | None:
        if self._token is not None and self._clock() < self._renew_at:
            return self._token
        cached = self._cache.load(self._cache_key)
        if cached is not None:
            token, expires_at = cached
            if self._clock() < expires_at - self._margin(expires_at - self._clock()):
                self._set(token, expires_at)
                return token
        return None

    def _margin(self, lifetime: float) -> float:
        # A tenth of the lifetime at most, so a 60 s token is not renewed on every request.
        return min(self.leeway, max(lifetime, 0.0) / 10.0)

    def _set(self, token: str, expires_at: float) -> None:
        lifetime = expires_at - self._clock()
        self._token = token
        self._expires_at = expires_at
        self._renew_at = expires_at - self._margin(lifetime)

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token (only if it is still ``token`` when one is given)."""
        if token is None or token == self._token:
            self._token = None
            self._renew_at = 0.0

    def _grant(self) -> dict[str, str]:
        raise NotImplementedError

    def _token_request(self) -> httpx.Request:
        form = {**self._grant(), **self.extra_params}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        headers = {"Accept": "application/json", "User-Agent": f"headwater-rest/{__version__}"}
        client_secret = self._secret("client_secret") if self._has_client_secret else None
        if self.client_auth == "basic" and self.client_id and client_secret is not None:
            basic = httpx.BasicAuth(self.client_id, client_secret)
            headers["Authorization"] = basic._auth_header
        else:
            if self.client_id:
                form["client_id"] = self.client_id
            if client_secret is not None:
                form["client_secret"] = client_secret
        return httpx.Request("POST", self.token_url, data=form, headers=headers)

    def _accept(self, response: httpx.Response) -> str:
        """Read a token response; raise a headwater error for a refusal."""
        status = response.status_code
        try:
            data = response.json()
        except ValueError:
            data = None
        if status >= 400 or not isinstance(data, dict) or not data.get("access_token"):
            error = data.get("error") if isinstance(data, dict) else None
            what = f" ({error})" if isinstance(error, str) and len(error) < 60 else ""
            message = f"token endpoint {httpx.URL(self.token_url).path} returned {status}{what}"
            if status in (400, 401, 403):
                raise AuthFailed(
                    f"{message}: the credentials were refused",
                    field=self.secret_field,
                    hint="check client_id, the client secret or refresh token, and scope",
                )
            if status < 400:
                raise ConnectorError(f"{message} without an access_token")
            raise error_for_status(
                status, message, retry_after=parse_retry_after(response.headers.get("retry-after"))
            )
        token = str(data["access_token"])
        register_secret(token)
        lifetime = data.get("expires_in")
        try:
            seconds = float(lifetime) if lifetime is not None else math.inf
        except (TypeError, ValueError):
            seconds = math.inf
        expires_at = self._clock() + seconds
        self._rotated(data)
        self._set(token, expires_at)
        if math.isfinite(expires_at):
            self._cache.save(self._cache_key, token, expires_at)
        return token

    def _rotated(self, data: Mapping[str, Any]) -> None:
        """Hook for grants whose response carries a new refresh token."""

    def _exchange(self) -> Generator[httpx.Request, httpx.Response, str]:
        """Fetch a new token: yields the token request, receives its (read) response."""
        self.fetches += 1
        logger.debug("fetching an OAuth2 token from %s", httpx.URL(self.token_url).path)
        response = yield self._token_request()
        return self._accept(response)

    # --- httpx flows ------------------------------------------------------------------------

    @staticmethod
    def _apply(request: httpx.Request, token: str) -> None:
        request.headers["Authorization"] = f"Bearer {token}"

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._valid()
        if token is None:
            with self._lock:
                token = self._valid()
                if token is None:
                    token = yield from self._sync_exchange()
        self._apply(request, token)
        response = yield request
        if response.status_code != 401:
            return
        # The API refused a token we believed valid (revoked, or expired early): renew
        # it once — unless another request already did — and replay this request once.
        with self._lock:
            self.invalidate(token)
            fresh = self._valid()
            if fresh is None or fresh == token:
                fresh = yield from self._sync_exchange()
        self._apply(request, fresh)
        yield request

    def _sync_exchange(self) -> Generator[httpx.Request, httpx.Response, str]:
        flow = self._exchange()
        token_request = next(flow)
        while True:
            response = yield token_request
            response.read()
            try:
                token_request = flow.send(response)
            except StopIteration as done:
                token: str = done.value
                return token

    def _alock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._alocks_guard:
            lock = self._alocks.get(loop)
            if lock is None:
                lock = self._alocks[loop] = asyncio.Lock()
            return lock

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = self._valid()
        if token is None:
            async with self._alock():
                token = self._valid()
                if token is None:
                    # An async generator cannot `yield from`: drive the exchange inline.
                    flow = self._exchange()
                    step = next(flow)
                    while True:
                        answer = yield step
                        await answer.aread()
                        try:
                            step = flow.send(answer)
                        except StopIteration as done:
                            token = str(done.value)
                            break
        self._apply(request, token)
        response = yield request
        if response.status_code != 401:
            return
        async with self._alock():
            self.invalidate(token)
            fresh = self._valid()
            if fresh is None or fresh == token:
                flow = self._exchange()
                step = next(flow)
                while True:
                    answer = yield step
                    await answer.aread()
                    try:
                        step = flow.send(answer)
                    except StopIteration as done:
                        fresh = str(done.value)
                        break
        self._apply(request, fresh)
        yield request


class ClientCredentials(_OAuth2):
    """OAuth2 client credentials grant."""

    def _grant(self) -> dict[str, str]:
        return {"grant_type": "client_credentials"}


class RefreshToken(_OAuth2):
    """OAuth2 refresh-token grant, saving a rotated refresh token through ``on_rotate``."""

    secret_field = "auth.refresh_token"  # noqa: S105  a field name

    def __init__(self, *, on_rotate: Callable[[str], None] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._refresh_token: str | None = None
        self._on_rotate = on_rotate

    def _grant(self) -> dict[str, str]:
        if self._refresh_token is None:
            self._refresh_token = self._secret("refresh_token")
        return {"grant_type": "refresh_token", "refresh_token": self._refresh_token}

    def _rotated(self, data: Mapping[str, Any]) -> None:
        new = data.get("refresh_token")
        if not isinstance(new, str) or not new or new == self._refresh_token:
            return
        register_secret(new)
        self._refresh_token = new
        if self._on_rotate is not None:
            self._on_rotate(new)


def _oauth_common(config: Mapping[str, Any], secret: SecretGetter) -> dict[str, Any]:
    cache: TokenCache | None = (
        KeyringTokenCache() if config.get("token_cache") == "keyring" else None
    )
    return {
        "token_url": str(config["token_url"]),
        "secret": secret,
        "client_id": config.get("client_id"),
        "has_client_secret": config.get("client_secret") is not None,
        "scope": config.get("scope"),
        "audience": config.get("audience"),
        "client_auth": config.get("client_auth", "basic"),
        "leeway": float(config.get("leeway", 30.0)),
        "extra_params": config.get("extra_params") or {},
        "cache": cache,
    }


def make_client_credentials(config: Mapping[str, Any], secret: SecretGetter) -> httpx.Auth:
    """``type: oauth2_client_credentials`` — token_url, client_id, client_secret, scope, ..."""
    if not config.get("client_id"):
        raise ConfigError("oauth2_client_credentials needs client_id", field="auth.client_id")
    # Resolve now so a missing secret fails at connect time, not at the first request.
    secret("client_secret")
    return ClientCredentials(**_oauth_common(config, secret))


def make_refresh_token(config: Mapping[str, Any], secret: SecretGetter) -> httpx.Auth:
    """``type: oauth2_refresh_token`` — token_url, refresh_token, client_id, client_secret, ..."""
    first = secret("refresh_token")
    source = config.get("refresh_token")
    reference = source.reference if isinstance(source, Secret) else None
    # The cache key must tell users apart: the reference names where this user's
    # refresh token lives (and stays put when it rotates); a literal is hashed.
    subject = reference or "sha256:" + hashlib.sha256(first.encode()).hexdigest()
    return RefreshToken(
        on_rotate=rotation_saver(source), subject=subject, **_oauth_common(config, secret)
    )


def rotation_saver(source: Any) -> Callable[[str], None] | None:
    """
    Where a rotated refresh token is written back: the file or keyring entry the
    reference names (atomically for files); ``None`` for literals, ``env:`` and callables.
    """
    reference = source.reference if isinstance(source, Secret) else None
    if not reference:
        return None
    scheme, _, rest = reference.partition(":")
    if scheme == "file":
        from pathlib import Path

        from headwater import atomic_file

        path = Path(rest).expanduser()

        def save_file(value: str) -> None:
            with atomic_file(path) as out:
                out.write(value.encode("utf-8"))
            try:
                path.chmod(0o600)
            except OSError:
                pass

        return save_file
    if scheme == "keyring":
        from headwater._resolvers import keyring_set, split_keyring_reference

        service, username = split_keyring_reference(rest)

        def save_keyring(value: str) -> None:
            keyring_set(service, username, value)

        return save_keyring
    return None


#: The schemes this plugin registers through ``register_auth_schemes``.
BUILTIN_SCHEMES: Final[dict[str, Callable[[Mapping[str, Any], SecretGetter], httpx.Auth]]] = {
    "none": make_none,
    "bearer": make_bearer,
    "api_key": make_api_key,
    "basic": make_basic,
    "oauth2_client_credentials": make_client_credentials,
    "oauth2_refresh_token": make_refresh_token,
}
