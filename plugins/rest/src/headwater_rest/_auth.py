"""
The built-in auth schemes, each an ``httpx.Auth``.

Factories have the signature core's ``register_auth_schemes`` hook documents:
``make(config, secret) -> httpx.Auth`` where ``config`` is the auth mapping minus
``type`` and ``secret(field)`` resolves the secret in that field at connect time.

The OAuth2 schemes share one token per auth object (so per connector): the first
request that needs a token fetches it while concurrent requests wait on a lock (a
thread lock for sync requests, an asyncio lock per event loop for async ones), the token
is reused until shortly before it expires, and a 401 from the API refreshes it once and
replays the request once. The token exchange itself (discovery from ``issuer``, then
the token request with its client authentication) is written once, sans-I/O, as the
flow `_OAuth2._exchange`, whose requests go through the connector's `TokenTransport`
(their own breaker and retries, so an authorization server's failure is never counted
as the API's); `_OAuth2._fetch` and `_OAuth2._afetch` run it on a sync or async client.

This module imports httpx at the top; only the connector imports it, never ``hooks``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote_plus

import httpx

from headwater import ConfigError, HeadwaterError, Secret
from headwater.toolkit import get_logger, is_loopback, redact, register_secret
from headwater_rest.__about__ import __version__
from headwater_rest._errors import TokenEndpointError
from headwater_rest._flow import Flow
from headwater_rest._http import TokenStep, TokenTransport

if TYPE_CHECKING:
    import asyncio

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


#: Authorization server metadata by issuer, fetched once per process (RFC 8414).
_METADATA: dict[str, dict[str, Any]] = {}
_METADATA_LOCK = threading.Lock()

#: ``client_auth`` → the RFC 8414 / OpenID name servers list in their metadata.
_METHOD_NAMES: Final = {
    "basic": "client_secret_basic",
    "basic_unencoded": "client_secret_basic",
    "body": "client_secret_post",
    "client_secret_jwt": "client_secret_jwt",
    "private_key_jwt": "private_key_jwt",
}
_ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Lifetime of a client assertion: long enough for clock skew, short against replay.
_ASSERTION_SECONDS: Final = 60
#: How much of the server's error_description is shown.
_DESCRIPTION_CHARS: Final = 200


def forget_metadata() -> None:
    """Forget every cached authorization server metadata document (tests use this)."""
    with _METADATA_LOCK:
        _METADATA.clear()


def well_known_urls(issuer: str) -> list[str]:
    """
    Where ``issuer``'s metadata may be: RFC 8414's ``/.well-known/oauth-authorization-server``
    (inserted before the issuer's path), then OpenID Connect Discovery's
    ``/.well-known/openid-configuration`` (appended to it).
    """
    url = httpx.URL(issuer)
    path = url.path.rstrip("/")
    origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
    return [
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{origin}{path}/.well-known/openid-configuration",
    ]


def basic_credentials(client_id: str, secret: str, *, encode: bool = True) -> str:
    """
    The ``Authorization`` value of client_secret_basic. RFC 6749 §2.3.1: the id and the
    secret are each ``application/x-www-form-urlencoded`` first (so ``+ % : /`` survive);
    ``encode=False`` sends them as written, for servers that do not decode.
    """
    if encode:
        client_id, secret = quote_plus(client_id, safe=""), quote_plus(secret, safe="")
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode("ascii")


def _load_signing_key(pem: str, algorithm: str) -> Any:
    """The private key in ``pem``, checked against ``algorithm`` (never shown in errors)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError) as exc:
        reason = "it is encrypted" if "encrypted" in str(exc).lower() else "it is not PEM"
        raise ConfigError(
            f"auth.private_key is not a usable PEM private key ({reason})",
            field="auth.private_key",
            hint="give an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----)",
        ) from None
    wanted: type[Any] = ec.EllipticCurvePrivateKey if algorithm == "ES256" else rsa.RSAPrivateKey
    if not isinstance(key, wanted) or (
        isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name != "secp256r1"
    ):
        kind = "a P-256 EC key" if algorithm == "ES256" else "an RSA key"
        raise ConfigError(
            f"auth.algorithm {algorithm} needs {kind}, and auth.private_key is not one",
            field="auth.algorithm",
            hint="RS256 / PS256 sign with RSA keys, ES256 with P-256 keys",
        )
    return key


class _OAuth2(httpx.Auth):
    """Shared machinery of the OAuth2 grants: cache, lock, expiry, 401 → refresh once."""

    #: The config field blamed when the token endpoint refuses the grant itself.
    grant_field = "auth.client_secret"

    def __init__(
        self,
        *,
        token_url: str | None,
        secret: SecretGetter,
        client_id: str | None,
        has_client_secret: bool,
        issuer: str | None = None,
        scope: str | None = None,
        audience: str | None = None,
        client_auth: str = "basic",
        private_key: Any = None,
        key_id: str | None = None,
        algorithm: str = "RS256",
        assertion_audience: str = "token_url",
        leeway: float = 30.0,
        extra_params: Mapping[str, str] | None = None,
        cache: TokenCache | None = None,
        subject: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if token_url is None and issuer is None:
            raise ConfigError("give auth.token_url or auth.issuer", field="auth.token_url")
        # Where the token comes from, and who asks for it.
        self.token_url, self.issuer, self.client_id = token_url, issuer, client_id
        # What it is for.
        self.scope, self.audience = scope, audience
        self.extra_params = dict(extra_params or {})
        # How the client proves who it is.
        self.client_auth, self.assertion_audience = client_auth, assertion_audience
        self.key_id, self.algorithm, self._private_key = key_id, algorithm, private_key
        self._secret, self._has_client_secret = secret, has_client_secret
        self.leeway = leeway
        self._cache = cache or TokenCache()
        self._clock = clock
        self._transport = TokenTransport()
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
                    token_url or f"issuer:{issuer}",
                    client_id or "",
                    scope or "",
                    audience or "",
                    json.dumps(sorted(self.extra_params.items())),
                    subject,
                ]
            ).encode()
        ).hexdigest()[:32]

    def __repr__(self) -> str:
        where = f"token_url={self.token_url!r}" if self.token_url else f"issuer={self.issuer!r}"
        return f"{type(self).__name__}({where}, client_id={self.client_id!r})"

    def bind_transport(self, transport: Any) -> None:
        """Send token requests with the connector's TLS settings, timeouts and retries."""
        self._transport = transport

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

    def _assertion(self, token_url: str, key: Any, algorithm: str) -> str:
        """An RFC 7523 client assertion: fresh ``jti``, short-lived, for this server."""
        import jwt

        now = int(time.time())
        audience = self.issuer if self.assertion_audience == "issuer" else token_url
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + _ASSERTION_SECONDS,
        }
        headers = {"kid": self.key_id} if self.key_id else None
        with warnings.catch_warnings():
            # A short client secret is the server's choice, said once at connect time
            # (`_oauth_common`); PyJWT would warn on every token request.
            short = getattr(getattr(jwt, "warnings", None), "InsecureKeyLengthWarning", None)
            if short is not None:
                warnings.simplefilter("ignore", short)
            return jwt.encode(claims, key, algorithm=algorithm, headers=headers)

    def _token_request(self, token_url: str) -> httpx.Request:
        form = {**self._grant(), **self.extra_params}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        headers = {"Accept": "application/json", "User-Agent": f"headwater-rest/{__version__}"}
        client_secret = self._secret("client_secret") if self._has_client_secret else None
        method = self.client_auth
        if method in ("basic", "basic_unencoded") and self.client_id and client_secret is not None:
            headers["Authorization"] = basic_credentials(
                self.client_id, client_secret, encode=method == "basic"
            )
        elif method in ("client_secret_jwt", "private_key_jwt") and self.client_id:
            if method == "client_secret_jwt":
                assertion = self._assertion(token_url, (client_secret or "").encode(), "HS256")
            else:
                assertion = self._assertion(token_url, self._private_key, self.algorithm)
            form["client_id"] = self.client_id
            form["client_assertion_type"] = _ASSERTION_TYPE
            form["client_assertion"] = assertion
        else:
            if self.client_id:
                form["client_id"] = self.client_id
            if client_secret is not None:
                form["client_secret"] = client_secret
        return httpx.Request("POST", token_url, data=form, headers=headers)

    def _refused(self, status: int, data: Any) -> HeadwaterError:
        """The error for a token endpoint's refusal, saying what the server said (RFC 6749 §5.2)."""
        error = data.get("error") if isinstance(data, dict) else None
        error = error if isinstance(error, str) and 0 < len(error) < 60 else None
        description = data.get("error_description") if isinstance(data, dict) else None
        said = ""
        if error:
            said = f": {error}"
            if isinstance(description, str) and description.strip():
                text = " ".join(description.split())
                if len(text) > _DESCRIPTION_CHARS:
                    text = text[: _DESCRIPTION_CHARS - 1] + "…"
                said += f" ({redact(text)})"
        path = httpx.URL(self.token_url or "").path
        if error is None and status in (404, 405):
            # Nothing that speaks OAuth2 answered there: the URL is wrong, not the secret.
            field = "auth.issuer" if self.issuer else "auth.token_url"
            return TokenEndpointError(
                f"token endpoint {path} returned {status}: no token endpoint there",
                field=field,
                hint=f"check {field}",
            )
        message = f"token endpoint {path} refused the request ({status}){said}"
        field, hint = self._blame(error, description if isinstance(description, str) else "")
        return TokenEndpointError(message, field=field, hint=hint)

    def _blame(self, error: str | None, description: str) -> tuple[str, str]:
        """The config field and hint for a token endpoint error code."""
        jwt_method = self.client_auth in ("client_secret_jwt", "private_key_jwt")
        if error == "invalid_scope":
            return "auth.scope", "request only scopes this client may have (check auth.scope)"
        if error == "invalid_client":
            if self.client_auth == "private_key_jwt":
                return (
                    "auth.private_key",
                    "check client_id, that the server has this key's public half "
                    "(key_id, algorithm), and assertion_audience",
                )
            if jwt_method:
                return "auth.client_secret", "check client_id, client_secret and assertion_audience"
            return "auth.client_secret", "check client_id and client_secret"
        if error == "invalid_request" and "encoded" in description:
            return (
                "auth.client_auth",
                "the server decodes client credentials as RFC 6749 says: use client_auth: basic",
            )
        if error == "unauthorized_client":
            return "auth.client_id", "the server does not allow this grant for this client_id"
        if error == "invalid_target":
            return "auth.extra_params", "check the resource / audience asked for"
        if error == "unsupported_grant_type":
            return "auth.type", "the server does not offer this grant type"
        return self.grant_field, "check client_id, the client secret or refresh token, and scope"

    def _accept(self, response: httpx.Response) -> str:
        """Read a token response; raise a headwater error for a refusal."""
        status = response.status_code
        try:
            data = response.json()
        except ValueError:
            data = None
        if status >= 400:
            raise self._refused(status, data)
        if not isinstance(data, dict) or not data.get("access_token"):
            path = httpx.URL(self.token_url or "").path
            raise TokenEndpointError(
                f"token endpoint {path} returned {status} without an access_token",
                field="auth.token_url",
                hint="check that auth.token_url is the server's token endpoint",
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

    def _discover(self) -> Flow[None]:
        """Learn the token endpoint from the issuer's metadata (cached per process)."""
        assert self.issuer is not None
        with _METADATA_LOCK:
            metadata = _METADATA.get(self.issuer)
        if metadata is None:
            tried: list[str] = []
            for url in well_known_urls(self.issuer):
                step = TokenStep(
                    url,
                    functools.partial(
                        httpx.Request, "GET", url, headers={"Accept": "application/json"}
                    ),
                    f"authorization server metadata {httpx.URL(url).path}",
                    "auth.issuer",
                )
                response = yield from self._transport.exchange(step)
                try:
                    data = response.json() if response.status_code == 200 else None
                except ValueError:
                    data = None
                if isinstance(data, dict):
                    metadata = data
                    break
                tried.append(f"{httpx.URL(url).path}: {response.status_code}")
            if metadata is None:
                raise ConfigError(
                    f"no authorization server metadata for issuer {self.issuer} "
                    f"({'; '.join(tried)})",
                    field="auth.issuer",
                    hint="check auth.issuer, or give auth.token_url instead",
                )
            with _METADATA_LOCK:
                _METADATA[self.issuer] = metadata
        self._use_metadata(metadata)

    def _use_metadata(self, metadata: Mapping[str, Any]) -> None:
        assert self.issuer is not None
        said = metadata.get("issuer")
        if not isinstance(said, str) or said.rstrip("/") != self.issuer.rstrip("/"):
            raise ConfigError(
                f"the metadata found for auth.issuer {self.issuer} names issuer {said!r}",
                field="auth.issuer",
                hint="set auth.issuer to exactly the issuer the server names (RFC 8414 §3.3)",
            )
        endpoint = metadata.get("token_endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            raise ConfigError(
                f"the metadata of issuer {self.issuer} has no token_endpoint",
                field="auth.issuer",
                hint="give auth.token_url instead",
            )
        url = httpx.URL(endpoint)
        if url.scheme == "http" and not is_loopback(url.host):
            raise ConfigError(
                f"issuer {self.issuer} names a plain-http token endpoint ({url.host})",
                field="auth.issuer",
                hint="the token endpoint must use https (plain http only to localhost)",
            )
        methods = metadata.get("token_endpoint_auth_methods_supported")
        wanted = _METHOD_NAMES.get(self.client_auth, self.client_auth)
        if isinstance(methods, list) and methods and wanted not in methods:
            accepted = ", ".join(str(m) for m in methods)
            raise ConfigError(
                f"the authorization server does not accept {wanted} (it accepts: {accepted})",
                field="auth.client_auth",
                hint="choose a client_auth the server accepts",
            )
        self.token_url = endpoint

    def _exchange(self) -> Flow[str]:
        """Fetch a new token: the flow of the token endpoint's requests (`TokenTransport`)."""
        if self.token_url is None:
            yield from self._discover()
        token_url = self.token_url
        assert token_url is not None
        self.fetches += 1
        logger.debug("fetching an OAuth2 token from %s", httpx.URL(token_url).path)
        step = TokenStep(
            token_url,
            functools.partial(self._token_request, token_url),
            f"token endpoint {httpx.URL(token_url).path}",
            # A token endpoint found through discovery is the issuer's.
            "auth.issuer" if self.issuer else "auth.token_url",
        )
        return self._accept((yield from self._transport.exchange(step)))

    def _fetch(self) -> str:
        """Run `_exchange` with blocking I/O."""
        return self._transport.run(self._exchange())

    async def _afetch(self) -> str:
        """Run `_exchange` with async I/O."""
        return await self._transport.arun(self._exchange())

    # --- httpx flows ------------------------------------------------------------------------

    @staticmethod
    def _with(request: httpx.Request, token: str) -> httpx.Request:
        request.headers["Authorization"] = f"Bearer {token}"
        return request

    def _usable(self, stale: str | None) -> str | None:
        """
        The token to use now (the lock held), ``None`` when one must be fetched: after the
        API refused ``stale``, one another request fetched meanwhile, never ``stale``.
        """
        if stale is not None:
            self.invalidate(stale)
        token = self._valid()
        return None if token == stale else token

    # The flow around one API request, once per side: the token (fetched under the lock
    # if none is valid), the request, and on a 401 a renewed token (unless another
    # request renewed it already) and the request once more.

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._valid() or self._renewed(None)
        if (yield self._with(request, token)).status_code == 401:
            yield self._with(request, self._renewed(token))

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = self._valid() or await self._arenewed(None)
        if (yield self._with(request, token)).status_code == 401:
            yield self._with(request, await self._arenewed(token))

    def _renewed(self, stale: str | None) -> str:
        with self._lock:
            return self._usable(stale) or self._fetch()

    def _alock(self) -> asyncio.Lock:
        import asyncio  # not at the top: sync reads never need it

        loop = asyncio.get_running_loop()
        with self._alocks_guard:
            lock = self._alocks.get(loop)
            if lock is None:
                lock = self._alocks[loop] = asyncio.Lock()
            return lock

    async def _arenewed(self, stale: str | None) -> str:
        async with self._alock():
            return self._usable(stale) or await self._afetch()


class ClientCredentials(_OAuth2):
    """OAuth2 client credentials grant."""

    def _grant(self) -> dict[str, str]:
        return {"grant_type": "client_credentials"}


class RefreshToken(_OAuth2):
    """OAuth2 refresh-token grant, saving a rotated refresh token through ``on_rotate``."""

    grant_field = "auth.refresh_token"

    def __init__(self, *, on_rotate: Callable[[str], None] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._refresh_token: str | None = None
        self._on_rotate = on_rotate

    def _grant(self) -> dict[str, str]:
        if self._refresh_token is None:
            self._refresh_token = self._secret("refresh_token")
        return {"grant_type": "refresh_token", "refresh_token": self._refresh_token}

    def _blame(self, error: str | None, description: str) -> tuple[str, str]:
        if error == "invalid_grant":
            return (
                "auth.refresh_token",
                "the refresh token was revoked, expired or already used: sign in again to get "
                "a new one and store it where auth.refresh_token points",
            )
        return super()._blame(error, description)

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
    client_auth = str(config.get("client_auth") or "basic")
    algorithm = str(config.get("algorithm") or "RS256")
    private_key = None
    if client_auth == "private_key_jwt":
        # Resolved and parsed now, so a missing or unusable key fails at connect time.
        private_key = _load_signing_key(secret("private_key"), algorithm)
    if client_auth == "client_secret_jwt" and config.get("client_secret") is not None:
        size = len(secret("client_secret").encode("utf-8"))
        if size < 32:
            logger.warning(
                "auth.client_secret is %d bytes; HS256 client assertions want at least 32 "
                "(RFC 7518 §3.2): ask the server for a longer secret",
                size,
            )
    if client_auth in ("client_secret_jwt", "private_key_jwt") and not config.get("client_id"):
        raise ConfigError(f"client_auth: {client_auth} needs client_id", field="auth.client_id")
    return {
        "token_url": config.get("token_url"),
        "issuer": config.get("issuer"),
        "secret": secret,
        "client_id": config.get("client_id"),
        "has_client_secret": config.get("client_secret") is not None,
        "scope": config.get("scope"),
        "audience": config.get("audience"),
        "client_auth": client_auth,
        "private_key": private_key,
        "key_id": config.get("key_id"),
        "algorithm": algorithm,
        "assertion_audience": str(config.get("assertion_audience") or "token_url"),
        "leeway": float(config.get("leeway", 30.0)),
        "extra_params": config.get("extra_params") or {},
        "cache": cache,
    }


def make_client_credentials(config: Mapping[str, Any], secret: SecretGetter) -> httpx.Auth:
    """``type: oauth2_client_credentials`` — token_url or issuer, client_id, client_auth, ..."""
    if not config.get("client_id"):
        raise ConfigError("oauth2_client_credentials needs client_id", field="auth.client_id")
    common = _oauth_common(config, secret)
    if common["has_client_secret"]:
        # Resolve now so a missing secret fails at connect time, not at the first request.
        secret("client_secret")
    elif config.get("client_auth") != "private_key_jwt":
        raise ConfigError(
            "oauth2_client_credentials needs client_secret", field="auth.client_secret"
        )
    return ClientCredentials(**common)


def make_refresh_token(config: Mapping[str, Any], secret: SecretGetter) -> httpx.Auth:
    """``type: oauth2_refresh_token`` — token_url or issuer, refresh_token, client_id, ..."""
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

        from headwater.toolkit import atomic_file

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
        from headwater.toolkit import keyring_set, split_keyring_reference

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
