"""
The connector's client for calls that are not streams: ``client()``, ``aclient()``,
``request()``.

What the caller holds is a plain ``httpx.Client`` / ``httpx.AsyncClient`` (base URL,
timeouts, User-Agent) whose transport is `GuardedTransport`: each request it carries
goes through the same exchange flow as a stream's pages (`Http.transport_flow`, run by
`run` / `arun` on the connector's clients) — the origin rule (auth,
configured headers and params only to base_url's origin; another origin refused unless
``allowed_hosts`` names it, and then sent without any credential), the rate-limit
budget and pace, the per-origin breaker and the retry policy (a POST or PATCH without an
idempotency key retried only when it cannot have been processed). The requests
themselves are sent by the connector's own client (its pool, TLS settings, proxies) with
its auth, so OAuth tokens are cached and refreshed as for reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import httpx

from headwater.toolkit import RetryPolicy
from headwater_rest._config import is_credential_name
from headwater_rest._flow import Flow, arun, run
from headwater_rest._http import (
    IDEMPOTENT_METHODS,
    MAX_REDIRECTS,
    USER_AGENT,
    Exchange,
    Outgoing,
    origin_of,
    origin_text,
    status_error,
)

if TYPE_CHECKING:
    from headwater_rest._config import RestConfig
    from headwater_rest._http import Http

from headwater_rest._errors import OriginRefused

#: Idempotency-key headers every API that has one uses (IETF draft, Stripe's, ...).
IDEMPOTENCY_HEADERS: Final = frozenset({"idempotency-key", "x-idempotency-key"})
#: Never sent to another origin, whoever set them.
_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})


def idempotency_headers(config: RestConfig) -> frozenset[str]:
    """Header names (lower case) that make a POST or PATCH safe to retry."""
    named = {
        stream.write.idempotency_header.lower()
        for stream in config.streams.values()
        if stream.write is not None and stream.write.idempotency_header
    }
    return IDEMPOTENCY_HEADERS | named


class _Guard:
    """What the sync and async transports share: the origin rule and the retry safety."""

    def __init__(self, http: Http) -> None:
        self.http = http
        self.keys = idempotency_headers(http.config)

    def prepare(self, request: httpx.Request) -> tuple[httpx.Request, Outgoing]:
        """The request to send (a copy) and how it reads in messages; or `OriginRefused`."""
        endpoint = self.http.endpoint
        origin = origin_of(request.url)
        credentials = origin == endpoint.origin
        headers = httpx.Headers(request.headers)
        url = request.url
        if credentials:
            for name, value in endpoint.headers.items():
                headers.setdefault(name, value)
            missing = {k: v for k, v in endpoint.params.items() if k not in url.params}
            if missing:
                url = url.copy_merge_params(missing)
        elif endpoint.allows(origin):
            for name in list(headers.keys()):
                lowered = name.lower()
                if (
                    lowered in _CREDENTIAL_HEADERS
                    or is_credential_name(name)
                    or lowered in (k.lower() for k in endpoint.headers)
                ):
                    del headers[name]
        else:
            raise OriginRefused(
                f"{request.method} to {origin_text(origin)}, which is not "
                f"{origin_text(endpoint.origin)} (base_url); nothing was sent there",
                field="allowed_hosts",
                hint=f"add {origin[1]} to allowed_hosts to call it (never with credentials)",
            )
        copy = httpx.Request(
            request.method,
            url,
            headers=headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        sent = Outgoing(request.method, str(url), {}, {}, None, credentials)
        return copy, sent

    def safe(self, request: httpx.Request) -> bool:
        """Whether sending ``request`` twice does no harm."""
        if request.method.upper() in IDEMPOTENT_METHODS:
            return True
        return any(name.lower() in self.keys for name in request.headers)

    @staticmethod
    def replayable(request: httpx.Request) -> bool:
        """A body in memory can be sent again; a streamed upload only once."""
        return isinstance(request.stream, httpx.ByteStream)

    def exchange(self, request: httpx.Request) -> Flow[httpx.Response]:
        """
        The flow of the caller's ``request`` through `Http.transport_flow`: the response
        for the caller's client, or the error that is not a response.
        """
        copy, sent = self.prepare(request)
        # A streamed upload cannot be sent twice: one try.
        policy = None if self.replayable(copy) else RetryPolicy.NONE
        flow = self.http.transport_flow(copy, sent, safe=self.safe(copy), policy=policy)
        return handed_over(request, (yield from flow))


def handed_over(request: httpx.Request, result: Exchange) -> httpx.Response:
    """The response for the caller's client (a new one: its request is the caller's)."""
    response = result.response
    headers = httpx.Headers(response.headers)
    body: dict[str, Any] = {"stream": response.stream}
    if hasattr(response, "_content"):
        # Read (and decoded) here: the caller gets the bytes, not the encoding again.
        for name in ("content-encoding", "content-length", "transfer-encoding"):
            headers.pop(name, None)
        body = {"content": response.content}
    return httpx.Response(
        response.status_code,
        headers=headers,
        request=request,
        extensions=response.extensions,
        **body,
    )


class GuardedTransport(httpx.BaseTransport):
    """Sends through the connector's `Http`: origin rule, budget, breaker, retries, auth."""

    def __init__(self, http: Http) -> None:
        self._guard = _Guard(http)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return run(self._guard.exchange(request), self._guard.http.client)


class AsyncGuardedTransport(httpx.AsyncBaseTransport):
    """Async twin of `GuardedTransport`, on an async client of its own."""

    def __init__(self, http: Http) -> None:
        self._guard = _Guard(http)
        self._client = http.aclient()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await arun(self._guard.exchange(request), self._client)

    async def aclose(self) -> None:
        await self._client.aclose()


def client_options(http: Http) -> dict[str, Any]:
    """The caller's client: base URL, timeouts, User-Agent; redirects under the origin rule."""
    options = http.client_options()
    return {
        "base_url": http.config.base_url,
        "headers": {"User-Agent": USER_AGENT, "Accept": "application/json"},
        "timeout": options["timeout"],
        # Every hop goes through the transport again: a redirect to another origin is
        # refused, or (allowed_hosts) sent without credentials.
        "follow_redirects": True,
        "max_redirects": MAX_REDIRECTS,
        "trust_env": False,  # proxies are the connector's own client's business
    }


def make_client(http: Http) -> httpx.Client:
    """A sync client for ad-hoc calls (close it; the connector's pool stays open)."""
    return httpx.Client(transport=GuardedTransport(http), **client_options(http))


def make_aclient(http: Http) -> httpx.AsyncClient:
    """An async client for ad-hoc calls, with a pool of its own (close it)."""
    return httpx.AsyncClient(transport=AsyncGuardedTransport(http), **client_options(http))


def checked(http: Http, response: httpx.Response) -> httpx.Response:
    """``response`` (read), or the headwater error for its status or retried body."""
    request = response.request
    sent = Outgoing(request.method, str(request.url), {}, {}, None, True)
    if response.status_code >= 400:
        raise status_error(sent, response)
    if http.retries_response(response):
        from headwater import ServerError

        raise ServerError(
            f"{sent.what} returned {response.status_code} with a body that retry.on_response "
            "(or retry_if) says to try again, until the retries ran out",
            hint="try again later",
        )
    return response
