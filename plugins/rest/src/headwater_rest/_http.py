"""
The I/O boundary: httpx clients, the origin policy, retries, the breaker, the rate limit.

`Endpoint` is pure: it turns "what the connector wants" into "what to send", deciding
whether credentials may go along (only to ``base_url``'s scheme, host and port) and
refusing other origins unless ``allowed_hosts`` names them. `Http` does the sending
with a sync `httpx.Client` or an `httpx.AsyncClient` (one per event loop), maps httpx
exceptions and HTTP statuses to headwater errors in one place (`map_errors`,
`status_error`), and wraps every request in the retry policy and the per-origin
circuit breaker. Before each request it asks the origin's rate budget (core's rate
budget, fed with every response's rate-limit headers) whether to wait for an announced
reset.

All of that is written once, as a sans-I/O flow (`headwater_rest._flow`): `Http._exchange`
yields the requests to send and the pauses to make and receives their outcomes, and
`run` / `arun` perform them with the sync or the async client. So do the token
endpoint's requests (`TokenTransport.exchange`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import itertools
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx

from headwater import (
    ConfigError,
    ConnectionFailed,
    ConnectorError,
    HeadwaterError,
    NotFound,
    RateLimited,
    ServerError,
    TLSFailure,
)
from headwater.toolkit import (
    BreakerSettings,
    RateBudget,
    RateLimitInfo,
    RetryPolicy,
    Slot,
    breaker_for,
    error_for_status,
    get_logger,
    is_rate_limited,
    loads_json,
    parse_rate_limit,
    parse_retry_after,
    redact,
)
from headwater_rest.__about__ import __version__
from headwater_rest._config import NO_JSON, RestConfig, has_credentials
from headwater_rest._errors import OriginRefused, TokenEndpointError
from headwater_rest._flow import Flow, Pause, Send, arun, retried, run
from headwater_rest._paginate import ASendMany, PageRequest, PageResponse, SendMany

if TYPE_CHECKING:
    import asyncio

    from headwater.toolkit import CircuitBreaker

logger = get_logger("headwater_rest.http")
# httpx logs every request URL at INFO; an api_key query parameter or a token echoed in
# a URL must be masked there too, so its logger gets the redacting filter as well.
get_logger("httpx")

#: Sent with every request.
USER_AGENT: Final = f"headwater-rest/{__version__}"
MAX_REDIRECTS: Final = 5
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

Origin = tuple[str, str, int]
T = TypeVar("T")
R = TypeVar("R")


class _Cancellable(Protocol):
    def cancel(self) -> bool: ...


F = TypeVar("F", bound=_Cancellable)


def origin_of(url: str | httpx.URL) -> Origin:
    """``(scheme, host, port)`` with the default port filled in."""
    parts = urlsplit(str(url))
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    return scheme, host, port


def origin_text(origin: Origin) -> str:
    """``https://host:port`` (the breaker key and how origins appear in messages)."""
    return f"{origin[0]}://{origin[1]}:{origin[2]}"


@dataclasses.dataclass(frozen=True, slots=True)
class RequestSpec:
    """What the connector wants fetched."""

    method: str = "GET"
    #: A path under base_url, or ``None`` when ``url`` is set.
    path: str | None = None
    #: An absolute URL (a next page, a Link); its query is kept as is.
    url: str | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    #: A body already encoded (a write's JSON, with its content type in ``headers``).
    content: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Outgoing:
    """What is sent: an absolute URL, and whether credentials go with it."""

    method: str
    url: str
    params: dict[str, Any]
    headers: dict[str, str]
    json: Any
    credentials: bool
    content: bytes | None = None

    @property
    def what(self) -> str:
        """``GET /path`` for messages: never the query, which may hold a key."""
        return f"{self.method} {urlsplit(self.url).path or '/'}"


class Endpoint:
    """The origin policy and request building (no I/O)."""

    def __init__(
        self,
        config: RestConfig,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        """
        ``headers`` and ``params`` are the config's with their secrets resolved (the
        connector resolves them when it connects); by default the config's own, which
        must then hold no secret.
        """
        self.config = config
        given_headers = config.headers if headers is None else headers
        given_params = config.params if params is None else params
        if has_credentials(given_headers) or has_credentials(given_params):
            raise TypeError("Endpoint needs the resolved headers and params of this config")
        self.headers: dict[str, str] = {k: str(v) for k, v in given_headers.items()}
        self.params: dict[str, Any] = dict(given_params)
        self.base_url = config.base_url
        self.origin = origin_of(config.base_url)
        self._allowed = [_allowed_entry(entry) for entry in config.allowed_hosts]

    def allows(self, origin: Origin) -> bool:
        """Whether ``allowed_hosts`` lets us follow links to ``origin`` (without credentials)."""
        scheme, host, port = origin
        for a_scheme, a_host, a_port in self._allowed:
            if a_host == host and a_scheme in (None, scheme) and a_port in (None, port):
                return True
        return False

    def build(self, spec: RequestSpec) -> Outgoing:
        """The request for ``spec``: stream paths get the config's headers and params."""
        if spec.url is None:
            path = spec.path or "/"
            return Outgoing(
                spec.method,
                self.base_url + path,
                {**self.params, **spec.params},
                {**self.headers, **spec.headers},
                spec.json,
                credentials=True,
                content=spec.content,
            )
        return self.follow(spec.method, spec.url, spec.json, spec.headers, spec.content)

    def follow(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> Outgoing:
        """A request to an absolute URL the API handed us (next link or redirect)."""
        origin = origin_of(url)
        if origin[0] not in ("http", "https"):
            raise OriginRefused(
                f"refusing to follow a {origin[0] or 'relative'}: URL", field="allowed_hosts"
            )
        if origin == self.origin:
            return Outgoing(
                method, url, {}, {**self.headers, **(headers or {})}, body, True, content
            )
        if self.allows(origin):
            # Another origin the user trusts with our traffic, but not with our
            # credentials: no auth, none of the configured headers or params.
            return Outgoing(method, url, {}, {}, body, credentials=False, content=content)
        raise OriginRefused(
            f"the API pointed to {origin_text(origin)}, which is not {origin_text(self.origin)} "
            "(base_url); nothing was sent there",
            field="allowed_hosts",
            hint=f"add {origin[1]} to allowed_hosts to follow it (never with credentials)",
        )

    def redirect(self, sent: Outgoing, response: httpx.Response) -> Outgoing:
        """The request a 3xx response asks for, under the same origin policy."""
        location = response.headers.get("location")
        if not location:
            raise ConnectorError(f"{sent.what} returned {response.status_code} without a Location")
        url = str(response.url.join(location))
        method = sent.method
        body = sent.json
        content = sent.content
        headers = sent.headers if sent.credentials else None
        if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
            method, body, content = "GET", None, None
            if headers is not None:
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        # Within the origin the request's own headers (the stream's among them) go along;
        # `follow` drops every header for any other origin.
        return self.follow(method, url, body, headers, content)


def _allowed_entry(entry: str) -> tuple[str | None, str, int | None]:
    if "://" in entry:
        parts = urlsplit(entry)
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    host, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
    return None, host.lower().strip("[]"), int(port) if port.isdigit() else None


# --- errors ------------------------------------------------------------------------------------


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``exc`` or an exception in its chain is a ``kind`` (httpx wraps httpcore's)."""
    return _cause_of(exc, kind) is not None


def _cause_of(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first ``kind`` in ``exc``'s chain (``exc`` included), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        current = current.__cause__ or current.__context__
    return None


def _is_tls(exc: BaseException) -> bool:
    if _caused_by(exc, ssl.SSLError):
        return True
    text = str(exc)
    return "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return redact(text[:160]) if text else type(exc).__name__


def _host_of(exc: httpx.HTTPError) -> str:
    """``host:port`` of the failed request (``""`` when httpx did not say)."""
    # ``what`` names only the path, but a connection failure is about the host, which
    # is not always base_url's: the token endpoint's, or an allowed host's.
    try:
        url = exc.request.url
    except RuntimeError:  # httpx raised it outside a request
        return ""
    _, host, port = origin_of(url)
    return f"{host}:{port}"


def _scheme_of(exc: httpx.HTTPError) -> str:
    try:
        return exc.request.url.scheme
    except RuntimeError:  # httpx raised it outside a request
        return ""


@contextlib.contextmanager
def map_errors(what: str, *, url_field: str = "base_url") -> Iterator[None]:
    """
    Translate httpx exceptions raised inside to headwater errors (the one place that does).
    ``url_field`` is the config field naming the URL that failed (``auth.token_url`` for
    the token endpoint), blamed when the host cannot be resolved or reached.
    """
    try:
        yield
    except HeadwaterError:
        raise
    except httpx.TimeoutException as exc:
        phase = {
            httpx.ConnectTimeout: "connecting",
            httpx.ReadTimeout: "waiting for the response",
            httpx.WriteTimeout: "sending the request",
            httpx.PoolTimeout: "waiting for a free connection",
        }.get(type(exc), "")
        host = _host_of(exc) if isinstance(exc, httpx.ConnectTimeout) else ""
        if host:
            phase += f" to {host}"
        raise ConnectionFailed(
            f"{what}: timed out {phase}".rstrip(),
            hint="the service is slow or unreachable; raise timeouts or try again later",
        ) from None
    except httpx.ConnectError as exc:
        host = _host_of(exc)
        to = f" to {host}" if host else ""
        if _is_tls(exc):
            raise TLSFailure(
                f"{what}: TLS{to} failed ({_reason(exc)})",
                field="verify",
                hint="check the server certificate, or give the CA bundle in verify "
                "(and tls.client_cert if the server asks for a client certificate)",
            ) from None
        if _caused_by(exc, socket.gaierror):
            name = host.rpartition(":")[0] or "the host"
            raise ConnectionFailed(
                f"{what}: cannot resolve {name} ({_reason(exc)})",
                field=url_field,
                hint=f"check the host name in {url_field}, and DNS",
            ) from None
        raise ConnectionFailed(
            f"{what}: cannot connect{to} ({_reason(exc)})",
            field=url_field,
            hint=f"check {url_field}, DNS and that the service is running",
        ) from None
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.CloseError) as exc:
        if _caused_by(exc, ssl.SSLError):
            raise _tls_refusal(what, _cause_of(exc, ssl.SSLError) or exc) from None
        hint = None
        if _scheme_of(exc) == "https":
            # The async stack loses the TLS alert when the server hangs up on a client
            # without a certificate: all that is left is a dropped connection.
            hint = "if the server wants a client certificate, set tls.client_cert"
        raise ConnectionFailed(
            f"{what}: the connection dropped ({_reason(exc)})", hint=hint
        ) from None
    except ssl.SSLError as exc:
        # Now and then the async stack lets the TLS alert through unwrapped.
        raise _tls_refusal(what, exc) from None
    except httpx.HTTPError as exc:
        raise ConnectorError(f"{what}: {type(exc).__name__} ({_reason(exc)})") from None


def _tls_refusal(what: str, exc: BaseException) -> TLSFailure:
    """A TLS error after the handshake: the server refused us (often: no client certificate)."""
    # With TLS 1.3 a server refusing a client without a certificate says so only after
    # the handshake, on the first read: "tlsv13 alert certificate required".
    reason = _reason(exc)
    wants_cert = "CERTIFICATE_REQUIRED" in reason.upper()
    return TLSFailure(
        f"{what}: TLS failed ({reason})",
        field="tls.client_cert" if wants_cert else "verify",
        hint="the server asks for a client certificate: set tls.client_cert and tls.client_key"
        if wants_cert
        else "check the server certificate and tls settings",
    )


def status_error(
    sent: Outgoing,
    response: httpx.Response,
    *,
    retry_statuses: frozenset[int] | None = None,
    info: RateLimitInfo | None = None,
) -> HeadwaterError:
    """
    The headwater error for an HTTP error response. ``retry_statuses`` (``retry.statuses``)
    decides which are retried; ``info`` is the response's rate-limit headers.
    """
    status = response.status_code
    message = f"{sent.what} returned {status} {response.reason_phrase}".rstrip()
    detail = _detail(response)
    if detail:
        message += f": {detail}"
    if info is None:
        info = parse_rate_limit(response.headers)
    if status == 404:
        error: HeadwaterError = NotFound(
            message, field="path", hint="check base_url and the stream's path"
        )
    elif is_rate_limited(status, info):
        # GitHub's primary limit is a 403 with X-RateLimit-Remaining: 0: a limit to wait
        # out, not a permission problem. The wait itself is the rate budget's (it holds
        # every reader until the reset), so the retry adds only its jitter.
        error = RateLimited(
            message,
            retry_after=0.0 if info.wait is not None else None,
            hint="the API's rate limit is exhausted; the read waits for its reset",
        )
    else:
        field = "auth" if status in (401, 403) else None
        error = error_for_status(status, message, retry_after=info.retry_after, field=field)
    if retry_statuses is not None and status != 404:
        limited = isinstance(error, RateLimited)
        wanted = status in retry_statuses or (limited and 429 in retry_statuses)
        # The instance overrides its class's flag (the retry policy reads the instance).
        error.retryable = wanted  # type: ignore[misc]
    return error


def _detail(response: httpx.Response) -> str:
    # A short excerpt of an error body helps ("invalid_scope"); HTML pages do not.
    if "json" not in response.headers.get("content-type", "") or not response.content:
        return ""
    try:
        data = json.loads(response.content)
    except ValueError:
        return ""
    if isinstance(data, dict):
        for key in ("error_description", "message", "error", "detail", "title"):
            value = data.get(key)
            if isinstance(value, str) and value:
                text = " ".join(value.split())
                return redact(text[:120])
    return ""


def parse_body(sent: Outgoing, response: httpx.Response) -> Any:
    """The JSON body (``None`` when empty)."""
    content = response.content
    if not content.strip():
        return None
    try:
        # msgspec, with json.loads for what it refuses (headwater.toolkit.loads_json):
        # parsing is most of the time of a read.
        return loads_json(content)
    except ValueError:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        raise ConnectorError(
            f"{sent.what}: the response is not JSON ({kind})",
            hint="check base_url and the stream's path",
        ) from None


@functools.lru_cache(maxsize=8)
def _ssl_context(cafile: str | None) -> ssl.SSLContext:
    # Loading CA certificates costs ~30 ms; a context is safe to share between clients,
    # so every connector of the process reuses one per CA bundle.
    if cafile is None:
        return httpx.create_ssl_context(verify=True, trust_env=True)
    return ssl.create_default_context(cafile=cafile)


@functools.lru_cache(maxsize=1)
def _trusting_nothing() -> ssl.SSLContext:
    # Verification on (CERT_REQUIRED, host names checked) with no CA loaded: a TLS
    # connection made with it fails closed. For clients that only ever speak plain http,
    # where the ~30 ms of loading the CA bundle would buy nothing.
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def load_client_cert(context: ssl.SSLContext, cert_pem: str, key_pem: str | None) -> None:
    """
    Make ``context`` (one of this connector's own) present a client certificate.

    ``load_cert_chain`` reads only files, and the certificate and key come from secret
    references (keyring, env), so they are written to a private temporary directory
    (mode 0700, files 0600) that is removed as soon as they are loaded.
    """
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="headwater-mtls-") as directory:
        cert_file = Path(directory) / "client.crt"
        key_file = Path(directory) / "client.key" if key_pem else None
        for path, text in ((cert_file, cert_pem), (key_file, key_pem)):
            if path is not None and text is not None:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text)
        try:
            context.load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, ValueError, OSError) as exc:
            # The reason names the failing step (PEM lib, key values mismatch), never the key.
            field = "tls.client_key" if "key" in str(exc).lower() else "tls.client_cert"
            raise ConfigError(
                f"cannot load the TLS client certificate and key ({_reason(exc)})",
                field=field,
                hint="tls.client_cert must be a PEM certificate and tls.client_key its PEM "
                "private key (unencrypted)",
            ) from None


# --- the token endpoint ------------------------------------------------------------------------

#: Statuses of a token endpoint worth another try (the server is busy or restarting).
_TRANSIENT: Final = frozenset({408, 429, 500, 502, 503, 504})


@dataclasses.dataclass(frozen=True, slots=True)
class TokenStep:
    """One request of an OAuth2 exchange (metadata or token), built afresh for each try."""

    #: Where it goes (the breaker is chosen by its origin).
    url: str
    #: Builds the request: a new client assertion (fresh ``jti``) on every try.
    build: Callable[[], httpx.Request]
    #: ``token endpoint /token`` for messages.
    what: str
    #: The config field naming the URL (``auth.token_url``, ``auth.issuer``).
    field: str


class TokenTransport:
    """
    Sends the requests of an OAuth2 exchange with their own circuit breaker (keyed by the
    authorization server's origin, apart from the API's even on the same origin) and the
    connector's retry policy, blaming failures on the auth fields. What escapes is a
    `TokenEndpointError` (or a `ConfigError`), never retried again by the API request
    that needed the token, and never counted against the API's breaker.
    """

    def __init__(
        self,
        client_options: Callable[[], dict[str, Any]] | None = None,
        policy: RetryPolicy | None = None,
        breaker: BreakerSettings | None = None,
    ) -> None:
        self._options = client_options or (
            lambda: {"headers": {"User-Agent": USER_AGENT}, "trust_env": True}
        )
        self.policy = policy or RetryPolicy()
        self._breaker = breaker or BreakerSettings()

    def breaker(self, url: str | httpx.URL) -> CircuitBreaker:
        """The process-wide breaker of the authorization server at ``url``."""
        return breaker_for(
            "token endpoint " + origin_text(origin_of(url)),
            failure_threshold=self._breaker.failure_threshold,
            reset_timeout=self._breaker.reset_timeout,
        )

    def client(self) -> httpx.Client:
        """A client for one exchange (token requests are rare: a few per token lifetime)."""
        return httpx.Client(**self._client_options())

    def aclient(self) -> httpx.AsyncClient:
        """The async twin of `client`."""
        return httpx.AsyncClient(**self._client_options())

    def _client_options(self) -> dict[str, Any]:
        return {**self._options(), "follow_redirects": False}

    @staticmethod
    def _checked(step: TokenStep, response: httpx.Response) -> httpx.Response:
        if response.status_code in _TRANSIENT:
            raise error_for_status(
                response.status_code,
                f"{step.what} returned {response.status_code}",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        return response

    @staticmethod
    def _blame(step: TokenStep, exc: HeadwaterError) -> HeadwaterError:
        if isinstance(exc, TokenEndpointError | ConfigError | TLSFailure):
            return exc
        return TokenEndpointError(
            exc.message,
            # base_url is not at fault for the token endpoint; tls.*, verify may be.
            field=exc.field if exc.field and exc.field != "base_url" else step.field,
            hint=exc.hint or f"check {step.field} and that the authorization server is up",
        )

    def exchange(self, step: TokenStep) -> Flow[httpx.Response]:
        """The flow of ``step`` with retries and the breaker; the read response (status < 500)."""

        def attempt() -> Flow[httpx.Response]:
            with map_errors(step.what, url_field=step.field):
                response = yield Send(step.build(), None)
            return self._checked(step, response)

        try:
            return (yield from retried(self.policy, self.breaker(step.url), attempt))
        except HeadwaterError as exc:
            raise self._blame(step, exc) from None

    def run(self, flow: Flow[T]) -> T:
        """Run an exchange's flow (its `exchange` steps) on a client of its own."""
        with self.client() as client:
            return run(flow, client)

    async def arun(self, flow: Flow[T]) -> T:
        """The async twin of `run`."""
        async with self.aclient() as client:
            return await arun(flow, client)


# --- the rate limit ----------------------------------------------------------------------------


class RateLimiter:
    """Spaces requests ``interval`` seconds apart across threads and event loops."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Book the next slot; returns how long to wait for it."""
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.interval
            return at - now


# --- sending -----------------------------------------------------------------------------------

#: Methods whose repetition does what one call does (RFC 9110 §9.2.2): always safe to retry.
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: Statuses that say the request was not processed, so even a POST may be sent again.
NOT_PROCESSED: Final = frozenset({429, 503})
#: Failures that happen before any byte of the request left: even a POST may be sent again.
_UNSENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

#: A predicate over a response: ``True`` tries it again (``RestConnector(retry_if=...)``).
RetryIf = Callable[[httpx.Response], bool]


@dataclasses.dataclass(frozen=True, slots=True)
class Exchange:
    """
    The outcome of one request after its retries: what was sent last, the last response
    (its body read, unless it succeeded and is being streamed), and the error that
    response stands for (``None`` when it succeeded).
    """

    sent: Outgoing
    response: httpx.Response
    error: HeadwaterError | None


class Http:
    """
    Sync and async HTTP for one connector: shared auth, policy, breaker and rate limit.

    Args:
        config: the connector config.
        auth: the ``httpx.Auth`` from the configured scheme (``None`` for no auth).
    """

    def __init__(
        self,
        config: RestConfig,
        auth: httpx.Auth | None,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        client_cert: tuple[str, str | None] | None = None,
        retry_if: RetryIf | None = None,
    ) -> None:
        self.config = config
        #: ``retry.on_response`` and the Python predicate: responses tried again.
        self._rules = tuple(config.retry.on_response)
        self._retry_if = retry_if
        self.endpoint = Endpoint(config, headers=headers, params=params)
        self.auth = auth
        #: ``(certificate PEM, key PEM or None)`` for mutual TLS (``tls``), resolved.
        self._client_cert = client_cert
        self._verify: bool | ssl.SSLContext | None = None
        r = config.retry
        self.policy = RetryPolicy(
            attempts=r.attempts,
            initial=r.initial,
            maximum=r.maximum,
            jitter=r.jitter,
            timeout=r.timeout,
        )
        interval = config.rate_limit.interval if config.rate_limit else 0.0
        self.limiter = RateLimiter(interval) if interval > 0 else None
        # What the API announces (RateLimit / X-RateLimit headers): one budget per origin,
        # shared by every reader of this connector, threads and async tasks alike.
        self._budgets: dict[Origin, RateBudget] = {}
        self.retry_statuses = frozenset(r.statuses)
        if config.verify is False:
            # allow_insecure makes this possible, not quiet: whoever runs the job sees that
            # a man in the middle would go unnoticed.
            logger.warning(
                "TLS certificates are not verified (verify: false, allow_insecure: true): "
                "connections to %s can be intercepted",
                origin_text(self.endpoint.origin),
            )
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        # OAuth2 schemes send their token requests themselves (own breaker, retries and
        # errors), with this connector's TLS settings, timeouts and retry policy.
        bind = getattr(auth, "bind_transport", None)
        if callable(bind):
            bind(TokenTransport(self.client_options, self.policy, config.breaker))

    def breaker(self, url: str) -> CircuitBreaker:
        """The process-wide breaker of ``url``'s origin."""
        b = self.config.breaker
        return breaker_for(
            origin_text(origin_of(url)),
            failure_threshold=b.failure_threshold,
            reset_timeout=b.reset_timeout,
        )

    def _verification(self) -> bool | ssl.SSLContext:
        c = self.config
        # With a client certificate the context is this connector's own (the cached ones
        # are shared by every connector of the process); without, the shared one.
        make = _ssl_context if self._client_cert is None else _ssl_context.__wrapped__
        verify: bool | ssl.SSLContext = False
        if c.verify is True:
            verify = make(None)
        elif c.verify is not False:
            path = c.verify.expanduser()
            if not path.is_file():
                raise ConfigError(f"CA bundle {str(path)!r} does not exist", field="verify")
            try:
                verify = make(str(path.resolve()))
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(
                    f"cannot load CA bundle {str(path)!r}: {_reason(exc)}", field="verify"
                ) from None
        if self._client_cert is not None:
            if not isinstance(verify, ssl.SSLContext):
                verify = ssl.create_default_context()
                verify.check_hostname = False
                verify.verify_mode = ssl.CERT_NONE
            load_client_cert(verify, *self._client_cert)
        return verify

    def _plain_http_only(self) -> bool:
        """
        Whether the API's clients can only ever send plain http: base_url is http, no
        other origin is allowed (redirects and links elsewhere are refused), no CA bundle
        or client certificate is configured.
        """
        c = self.config
        return (
            self.endpoint.origin[0] == "http"
            and not c.allowed_hosts
            and c.verify is True
            and self._client_cert is None
        )

    def client_options(self, *, api: bool = False) -> dict[str, Any]:
        """
        The options of every httpx client of this connector (API and token endpoint).
        ``api``: for the API's own clients, which need no CA bundle where they can only
        send plain http (`_plain_http_only`; the token endpoint may still be https).
        """
        c = self.config
        t = c.timeouts
        if api and self._plain_http_only():
            verify: bool | ssl.SSLContext = _trusting_nothing()
        else:
            if self._verify is None:
                self._verify = self._verification()
            verify = self._verify
        return {
            "headers": {"User-Agent": USER_AGENT, "Accept": "application/json"},
            "timeout": httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool),
            "limits": httpx.Limits(
                max_connections=c.max_connections, max_keepalive_connections=c.max_connections
            ),
            "verify": verify,
            "follow_redirects": False,
            "trust_env": True,
        }

    # --- sync ---------------------------------------------------------------------------------

    @property
    def sync_client(self) -> httpx.Client | None:
        """The sync client if it was built (for statistics: reading it builds nothing)."""
        return self._client

    @property
    def client(self) -> httpx.Client:
        """The sync client, built on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(**self.client_options(api=True))
        return self._client

    def _pace(self) -> float:
        return self.limiter.reserve() if self.limiter is not None else 0.0

    def budget(self, url: str) -> RateBudget:
        """The rate-limit budget of ``url``'s origin (this connector's, shared by its readers)."""
        origin = origin_of(url)
        with self._lock:
            budget = self._budgets.get(origin)
            if budget is None:
                budget = RateBudget(jitter=self.config.retry.jitter)
                self._budgets[origin] = budget
            return budget

    def _slot(self, budget: RateBudget, what: str) -> Slot:
        """The next slot of ``budget``; a wait beyond retry.max_rate_limit_wait ends the read."""
        slot = budget.reserve()
        limit = self.config.retry.max_rate_limit_wait
        if slot.wait > limit:
            resets = time.time() + slot.wait
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(resets))
            error = RateLimited(
                f"{what}: the API's rate limit is exhausted until {when} "
                f"({slot.wait:.0f} s, more than retry.max_rate_limit_wait: {limit:g}); "
                "the saved state resumes from this page",
                field="retry.max_rate_limit_wait",
                hint="run again after the reset, or raise retry.max_rate_limit_wait",
            )
            error.retryable = False  # type: ignore[misc]  # waiting is what was refused
            raise error
        return slot

    def retries_response(self, response: httpx.Response) -> bool:
        """
        Whether ``retry.on_response`` or the ``retry_if`` predicate asks to try ``response``
        again (its body must have been read).
        """
        if self._rules:
            parsed: list[Any] = []

            def body() -> Any:
                if not parsed:
                    try:
                        parsed.append(loads_json(response.content) if response.content else NO_JSON)
                    except ValueError:
                        parsed.append(NO_JSON)
                return parsed[0]

            if any(rule.matches(response.status_code, body) for rule in self._rules):
                return True
        if self._retry_if is not None:
            try:
                return bool(self._retry_if(response))
            except Exception as exc:
                raise ConfigError(
                    f"the retry_if predicate raised {type(exc).__name__}", field="retry_if"
                ) from None
        return False

    def _needs_body(self, response: httpx.Response) -> bool:
        """Whether judging ``response`` reads its body (errors and retry predicates do)."""
        return response.status_code >= 400 or bool(self._rules) or self._retry_if is not None

    def _judge(
        self, budget: RateBudget, slot: Slot, sent: Outgoing, response: httpx.Response
    ) -> tuple[HeadwaterError | None, bool]:
        """
        Report ``response`` to the budget; the error it stands for (``None``: success), and
        whether it proves the request was not processed (429, 503, an announced limit).
        """
        info = parse_rate_limit(response.headers, reset_style=self.config.retry.rate_limit_reset)
        status = response.status_code
        limited = status >= 400 and is_rate_limited(status, info)
        budget.done(slot, info, limited=limited)
        if limited:
            logger.info(
                "%s: rate limited (%d); waiting %s",
                sent.what,
                status,
                f"{info.wait:.1f} s for the reset" if info.wait is not None else "a back-off",
            )
        error: HeadwaterError | None = None
        if status >= 400:
            error = status_error(sent, response, retry_statuses=self.retry_statuses, info=info)
        if self.retries_response(response):
            if error is None:
                error = ServerError(
                    f"{sent.what} returned {status} with a body that retry.on_response "
                    "(or retry_if) says to try again",
                    hint="the API kept answering so until the retries ran out; try again later",
                )
            else:
                error.retryable = True  # type: ignore[misc]
        return error, limited or status in NOT_PROCESSED

    def _exchange(
        self,
        what: str,
        url: str,
        attempt: Callable[[], Flow[tuple[Outgoing, httpx.Response]]],
        *,
        safe: bool,
        policy: RetryPolicy | None,
        streamed: bool = False,
    ) -> Flow[Exchange]:
        """
        The flow of one request: ``attempt()`` (one try, redirects included) under the
        rate budget, the pace, the breaker of ``url``'s origin and the retry policy (the
        connector's unless ``policy``); ``safe=False`` (a POST without an idempotency key)
        retries only what cannot have been processed. ``streamed``: the response body is
        read only when judging it needs it. Returns the last try's outcome, an error
        status included; raises what is not a response (no connection, the breaker open,
        a refused origin).
        """
        breaker = self.breaker(url)
        budget = self.budget(url)
        last: Exchange | None = None
        unprocessed = False

        def one() -> Flow[Exchange]:
            nonlocal last, unprocessed
            unprocessed = False
            while not (slot := self._slot(budget, what)).go:
                yield Pause(slot.wait)
            try:
                delay = self._pace()
                if delay > 0:
                    yield Pause(delay)
                with map_errors(what):
                    try:
                        sent, response = yield from attempt()
                    except _UNSENT:
                        unprocessed = True
                        raise
                    if streamed and self._needs_body(response):
                        yield response  # read its body
            except BaseException:
                budget.done(slot, None)
                raise
            error, unprocessed = self._judge(budget, slot, sent, response)
            last = Exchange(sent, response, error)
            if error is not None:
                raise error
            return last

        base = policy or self.policy
        # A POST without an idempotency key goes again only when the API cannot have
        # processed it: the connection never opened, or it answered 429 / 503.
        retry_on = None if safe else (lambda exc: unprocessed and base.retry_on(exc))
        try:
            return (yield from retried(base, breaker, one, retry_on))
        except HeadwaterError as exc:
            if last is not None and last.error is exc:
                return last
            raise

    def _redirects(
        self, client: httpx.Client | httpx.AsyncClient, out: Outgoing
    ) -> Flow[tuple[Outgoing, httpx.Response]]:
        """One try of ``out`` on ``client``, following redirects under the origin policy."""
        for _ in range(MAX_REDIRECTS + 1):
            request = client.build_request(
                out.method,
                out.url,
                params=out.params or None,
                headers=out.headers,
                json=out.json,
                content=out.content,
            )
            response = yield Send(request, self.auth if out.credentials else None)
            if not response.is_redirect:
                return out, response
            out = self.endpoint.redirect(out, response)
        raise ConnectorError(f"{out.what}: more than {MAX_REDIRECTS} redirects")

    def request_flow(
        self,
        client: httpx.Client | httpx.AsyncClient,
        spec: RequestSpec,
        *,
        safe: bool = True,
        policy: RetryPolicy | None = None,
    ) -> Flow[Exchange]:
        """The flow of ``spec`` on ``client`` (`_exchange`, body read); `run` / `arun` it."""
        first = self.endpoint.build(spec)
        return self._exchange(
            first.what,
            first.url,
            lambda: self._redirects(client, first),
            safe=safe,
            policy=policy,
        )

    def transport_flow(
        self, request: httpx.Request, sent: Outgoing, *, safe: bool, policy: RetryPolicy | None
    ) -> Flow[Exchange]:
        """
        The flow of a request built by the caller (`headwater_rest._client`), sent as it is
        (no redirects followed, its body left to stream unless judging it needs it).
        """
        send = Send(request, self.auth if sent.credentials else None, stream=True)

        def attempt() -> Flow[tuple[Outgoing, httpx.Response]]:
            response = yield send
            return sent, response

        return self._exchange(sent.what, sent.url, attempt, safe=safe, policy=policy, streamed=True)

    def send(
        self, spec: RequestSpec, *, safe: bool = True, policy: RetryPolicy | None = None
    ) -> Exchange:
        """Run `request_flow` for ``spec`` on the connector's own client."""
        client = self.client
        return run(self.request_flow(client, spec, safe=safe, policy=policy), client)

    def fetch(self, spec: RequestSpec, policy: RetryPolicy | None = None) -> PageResponse:
        """One request with retries and the breaker; the parsed JSON response."""
        return _page(self.send(spec, policy=policy))

    def fetch_many(self, specs: list[RequestSpec], concurrency: int) -> Iterator[PageResponse]:
        """Fetch ``specs`` with at most ``concurrency`` in flight; responses in order."""
        workers = self._workers(specs, concurrency)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="headwater-rest")
        window = _Window(specs, workers, lambda spec: pool.submit(self.fetch, spec))
        try:
            for future in window:
                yield window.refilled(future.result())
        finally:
            window.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def senders(
        self, spec: Callable[[PageRequest], RequestSpec]
    ) -> tuple[Callable[[PageRequest], PageResponse], SendMany]:
        """`fetch` and `fetch_many` of page requests (``spec`` makes each one's request)."""
        return (
            lambda request: self.fetch(spec(request)),
            lambda requests, n: self.fetch_many(list(map(spec, requests)), n),
        )

    def _workers(self, specs: list[RequestSpec], concurrency: int) -> int:
        return max(1, min(concurrency, self.config.max_connections, len(specs)))

    # --- async --------------------------------------------------------------------------------

    def aclient(self) -> httpx.AsyncClient:
        """
        A new async client, for one async operation (``aread``, ``acheck``).

        An async client belongs to the event loop it first ran on, and callers often run
        each operation under its own ``asyncio.run``; a client kept beyond the operation
        would outlive its loop with connections that can no longer be closed. So each
        operation opens one (cheap: the TLS context is cached) and closes it at the end;
        its requests, concurrent pages included, share its connection pool.
        """
        return httpx.AsyncClient(**self.client_options(api=True))

    async def afetch(
        self, client: httpx.AsyncClient, spec: RequestSpec, policy: RetryPolicy | None = None
    ) -> PageResponse:
        """Async twin of `fetch`: `request_flow` run on ``client``."""
        return _page(await arun(self.request_flow(client, spec, policy=policy), client))

    def asenders(
        self, client: httpx.AsyncClient, spec: Callable[[PageRequest], RequestSpec]
    ) -> tuple[Callable[[PageRequest], Awaitable[PageResponse]], ASendMany]:
        """Async twin of `senders`, on ``client``."""
        return (
            lambda request: self.afetch(client, spec(request)),
            lambda requests, n: self.afetch_many(client, list(map(spec, requests)), n),
        )

    async def afetch_many(
        self, client: httpx.AsyncClient, specs: list[RequestSpec], concurrency: int
    ) -> AsyncIterator[PageResponse]:
        """Async twin of `fetch_many`: tasks instead of threads."""
        start = functools.partial(self._afetch_task, client)
        window = _Window(specs, self._workers(specs, concurrency), start)
        try:
            for task in window:
                yield window.refilled(await task)
        finally:
            pending = window.cancel()
            if pending:
                import asyncio  # not at the top: a sync read never needs it

                await asyncio.gather(*pending, return_exceptions=True)

    def _afetch_task(
        self, client: httpx.AsyncClient, spec: RequestSpec
    ) -> asyncio.Task[PageResponse]:
        import asyncio  # not at the top: a sync read never needs it

        return asyncio.ensure_future(self.afetch(client, spec))

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync client (async clients live as long as one operation)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class _Window(Generic[F]):
    """
    Requests started at most ``workers`` at a time, taken in order: iterating gives the
    oldest in flight; `refilled`, once its result is in, starts the next.
    """

    __slots__ = ("_pending", "_queue", "_start")

    def __init__(
        self, specs: list[RequestSpec], workers: int, start: Callable[[RequestSpec], F]
    ) -> None:
        self._queue = iter(specs)
        self._start = start
        self._pending = collections.deque(map(start, itertools.islice(self._queue, workers)))

    def __iter__(self) -> _Window[F]:
        return self

    def __next__(self) -> F:
        if not self._pending:
            raise StopIteration
        return self._pending.popleft()

    def refilled(self, result: R) -> R:
        """``result``, after starting the next request (one finished: one may start)."""
        spec = next(self._queue, None)
        if spec is not None:
            self._pending.append(self._start(spec))
        return result

    def cancel(self) -> list[F]:
        """Cancel what is still in flight; returns it."""
        pending = list(self._pending)
        self._pending.clear()
        for started in pending:
            started.cancel()
        return pending


def _page(result: Exchange) -> PageResponse:
    """The page of a stream's response, or the error it stands for."""
    if result.error is not None:
        raise result.error
    response = result.response
    return PageResponse(str(response.url), response.headers, parse_body(result.sent, response))


def pool_stats(client: httpx.Client, max_size: int) -> dict[str, int]:
    """
    ``size``, ``in_use``, ``idle`` and ``max_size`` of an httpx client's connection pool.
    httpx keeps its pool on the transport (httpcore's ``ConnectionPool.connections``, whose
    connections say whether they are idle); read through ``getattr``, so a release that
    moves them gives zeros, never an error in a health endpoint.
    """
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    connections = list(getattr(pool, "connections", ()) or ())
    idle = 0
    for connection in connections:
        is_idle = getattr(connection, "is_idle", None)
        if callable(is_idle) and is_idle():
            idle += 1
    size = len(connections)
    return {"size": size, "in_use": size - idle, "idle": idle, "max_size": max_size}
