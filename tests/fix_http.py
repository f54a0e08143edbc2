"""
A real HTTP API on loopback for the REST connector's tests: Starlette under uvicorn.

Two servers run for the whole session, each in a daemon thread on its own ephemeral
port: ``api`` (the API under test, with a token endpoint, every pagination style and
fault switches) and ``other`` (another origin: a different port is a different origin,
used for next links and redirects that leave the API). Each keeps a log of the requests
it received, headers and body included, with the time each arrived, so a test can
assert that ``other`` never saw a credential, or how far apart two requests came.

Fixtures: ``http_api`` and ``http_other`` (function-scoped handles; state reset before
each test). Option ``--http-bind`` / ``HEADWATER_TEST_HTTP_BIND`` (default 127.0.0.1)
is the loopback address (an IP address) the servers listen on.

``http_proxy`` is a forwarding HTTP proxy on loopback (absolute-form requests, logged,
then sent on), for tests of the proxy environment variables.

``https_api`` serves the same API over TLS, from two more servers started once per
session with certificates from a CA made for the session (tests/fix_certs.py): one
whose certificate names ``localhost`` and the bind address, and one whose certificate
names only ``localhost``, so reaching it by address is a host-name mismatch.

The secrets the servers accept are module constants (``CLIENT_SECRET``, ``API_KEY``,
...), distinctive strings that tests scan logs, reprs and errors for.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import http.client
import http.server
import ipaddress
import itertools
import json
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.fix_certs import make_certs, make_server_cert, openssl_available
from tests.fix_services import free_port, service_unavailable

CLIENT_ID = "hw-test-client"
CLIENT_SECRET = "cs-Zq8vW1-very-secret"
API_KEY = "ak-7Hn2Lp-very-secret"
BEARER = "bt-Q4mX9r-very-secret"
BASIC_USER = "alice"
BASIC_PASSWORD = "pw-K3dV6s-very-secret"
REFRESH_TOKEN = "rt-0-Yb5Nc8-very-secret"
#: Every secret above, for scans.
SECRETS = (CLIENT_SECRET, API_KEY, BEARER, BASIC_PASSWORD, REFRESH_TOKEN)
#: Where `oauth_auth` configs find the client secret (the REST tests' conftest sets it).
CLIENT_SECRET_ENV = "HW_TEST_CLIENT_SECRET"


def oauth_auth(api: HttpServer, **extra: Any) -> dict[str, Any]:
    """An ``oauth2_client_credentials`` auth config for ``api``'s token endpoint."""
    return {
        "type": "oauth2_client_credentials",
        "token_url": api.url + "/oauth/token",
        "client_id": CLIENT_ID,
        "client_secret": f"env:{CLIENT_SECRET_ENV}",
        **extra,
    }


ORGS = {"acme": 5, "globex": 0, "initech": 12}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--http-bind",
        default=os.environ.get("HEADWATER_TEST_HTTP_BIND", "127.0.0.1"),
        help="loopback address for the test HTTP servers (env HEADWATER_TEST_HTTP_BIND)",
    )


def record(i: int) -> dict[str, Any]:
    """The i-th record every paginated endpoint serves (1-based ids)."""
    return {"id": i, "name": f"item-{i}", "updated": i}


@dataclasses.dataclass
class Seen:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    #: When it arrived (``time.monotonic()``, before the body was read).
    at: float = 0.0

    def credentials(self) -> list[str]:
        """Every credential-looking thing in the request (for 'never sent there' checks)."""
        found = [h for h in ("authorization", "x-api-key", "cookie") if h in self.headers]
        found += [q for q in ("api_key", "access_token", "token") if q in self.query]
        text = json.dumps([self.headers, self.query, self.body.decode(errors="replace")])
        found += [s for s in SECRETS if s in text]
        return found


@dataclasses.dataclass
class ApiState:
    """Switches and counters of one server; reset before every test."""

    require_auth: bool = True
    #: path → queue of faults for the next requests: "429", "503", "502", "504", "500",
    #: "drop" (headers, half a body, then the connection closes), "slow", "ok" (none), or
    #: "after-502" (any status: the request is handled, a sink stores it, then that status).
    faults: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    slow_delay: float = 1.5
    retry_after: str = "0"
    token_ttl: int = 3600
    token_delay: float = 0.0
    #: After this many requests authorized by an issued token, revoke every token issued.
    revoke_after: int | None = None
    rotate_refresh: bool = False
    refresh_token: str = REFRESH_TOKEN
    token_hits: int = 0
    tokens: dict[str, float] = dataclasses.field(default_factory=dict)
    revoked: set[str] = dataclasses.field(default_factory=set)
    token_uses: int = 0
    #: Requests being handled now, and the most there ever were at once.
    in_flight: int = 0
    max_in_flight: int = 0
    log: list[Seen] = dataclasses.field(default_factory=list)
    #: ``/sink/NAME``: the records written to each sink, in arrival order.
    sinks: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    #: Idempotency-Key → the answer given, so a repeated key is answered, not stored again.
    idempotent: dict[str, Any] = dataclasses.field(default_factory=dict)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def fail(self, path: str, *faults: str) -> None:
        """Queue faults for the next requests to ``path``."""
        with self.lock:
            self.faults.setdefault(path, []).extend(faults)

    def take_fault(self, path: str) -> str | None:
        with self.lock:
            queue = self.faults.get(path)
            return queue.pop(0) if queue else None

    def hits(self, path: str) -> int:
        """Requests received for ``path``."""
        return sum(1 for seen in self.log if seen.path == path)

    def seen(self, path: str) -> list[Seen]:
        """The requests received for ``path``, in arrival order."""
        return [seen for seen in self.log if seen.path == path]


class HttpServer:
    """A running test server: its base URL and state."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        certfile: Path | None = None,
        keyfile: Path | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.url = f"{'https' if certfile else 'http'}://{host}:{port}"
        self.certfile = certfile
        self.keyfile = keyfile
        self.state = ApiState()
        self.peer: HttpServer | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def reset(self) -> None:
        self.state = ApiState()

    @property
    def log(self) -> list[Seen]:
        return self.state.log

    def start(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            build_app(self),
            host=self.host,
            port=self.port,
            log_level="critical",
            access_log=False,
            lifespan="off",
            http="h11",
            ws="none",
            ssl_certfile=str(self.certfile) if self.certfile else None,
            ssl_keyfile=str(self.keyfile) if self.keyfile else None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, name=f"http-{self.name}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"test HTTP server {self.name} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)


def build_app(server: HttpServer) -> Any:
    """The Starlette application of one server."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def state() -> ApiState:
        return server.state

    counter = itertools.count(1)

    def ints(request: Request, name: str, default: int) -> int:
        raw = request.query_params.get(name)
        return int(raw) if raw not in (None, "") else default

    def authorized(request: Request) -> bool:
        st = state()
        header = request.headers.get("authorization", "")
        if header == f"Bearer {BEARER}":
            return True
        if header.startswith("Bearer "):
            token = header[7:]
            with st.lock:
                expires = st.tokens.get(token)
                if expires is None or token in st.revoked or time.time() >= expires:
                    return False
                st.token_uses += 1
                if st.revoke_after is not None and st.token_uses >= st.revoke_after:
                    st.revoked.update(st.tokens)
                    st.revoke_after = None
                return True
        if header.startswith("Basic "):
            decoded = base64.b64decode(header[6:]).decode()
            return decoded == f"{BASIC_USER}:{BASIC_PASSWORD}"
        if request.headers.get("x-api-key") == API_KEY:
            return True
        return request.query_params.get("api_key") == API_KEY

    def guard(handler: Any, *, auth: bool = True) -> Any:
        async def wrapped(request: Request) -> Response:
            st = state()
            arrived = time.monotonic()
            body = await request.body()  # cached: the handler can read it again
            with st.lock:
                st.log.append(
                    Seen(
                        request.method,
                        request.url.path,
                        dict(request.query_params),
                        {k.lower(): v for k, v in request.headers.items()},
                        body,
                        arrived,
                    )
                )
                st.in_flight += 1
                st.max_in_flight = max(st.max_in_flight, st.in_flight)
            try:
                return await respond(request, st)
            finally:
                with st.lock:
                    st.in_flight -= 1

        async def respond(request: Request, st: ApiState) -> Response:
            fault = st.take_fault(request.url.path)
            if fault == "slow":
                await asyncio.sleep(st.slow_delay)
            elif fault == "drop":
                return _Drop()
            elif fault is not None and fault.startswith("after-"):
                request.state.fail_after = int(fault[6:])
            elif fault is not None and fault != "ok":
                status = int(fault)
                headers = {"Retry-After": st.retry_after} if status in (429, 503) else {}
                return JSONResponse(
                    {"error": f"injected {status}"}, status_code=status, headers=headers
                )
            if auth and st.require_auth and not authorized(request):
                return JSONResponse(
                    {"error": "unauthorized"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            result: Response = await handler(request)
            return result

        return wrapped

    def page_url(request: Request, **changes: Any) -> str:
        query = dict(request.query_params)
        query.update({k: str(v) for k, v in changes.items()})
        query.pop("api_key", None)
        return f"{request.url.path}?{urlencode(query)}"

    # --- token endpoint ---------------------------------------------------------------------

    async def token(request: Request) -> Response:
        st = state()
        body = (await request.body()).decode()
        form = {k: v[0] for k, v in parse_qs(body).items()}
        with st.lock:
            st.token_hits += 1
        if st.token_delay:
            await asyncio.sleep(st.token_delay)
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(header[6:]).decode().partition(":")
        grant = form.get("grant_type")
        if grant == "client_credentials":
            if (client_id, client_secret) != (CLIENT_ID, CLIENT_SECRET):
                return JSONResponse({"error": "invalid_client"}, status_code=401)
        elif grant == "refresh_token":
            if form.get("refresh_token") != st.refresh_token:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
        else:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        access = f"at-{uuid.uuid4().hex}"
        payload: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": st.token_ttl,
        }
        with st.lock:
            st.tokens[access] = time.time() + st.token_ttl
            if grant == "refresh_token" and st.rotate_refresh:
                st.refresh_token = f"rt-{next(counter)}-{uuid.uuid4().hex[:8]}"
                payload["refresh_token"] = st.refresh_token
        return JSONResponse(payload)

    # --- paginated endpoints ----------------------------------------------------------------

    def window(request: Request, offset: int, limit: int) -> list[dict[str, Any]]:
        n = ints(request, "n", 25)
        since = ints(request, "since", 0)
        ids = [i for i in range(1, n + 1) if i > since]
        return [record(i) for i in ids[offset : offset + limit]]

    async def cursor(request: Request) -> Response:
        limit = ints(request, "limit", 10)
        raw = request.query_params.get("cursor")
        offset = int(raw[1:]) if raw else 0
        mode = request.query_params.get("mode", "")
        rows = window(request, offset, limit)
        following = window(request, offset + limit, 1)
        nxt: str | None = f"c{offset + limit}" if following else None
        has_more = nxt is not None
        if mode == "cycle" and offset == 2 * limit:
            nxt, has_more = f"c{limit}", True
        elif mode == "self" and nxt is None:
            nxt, has_more = raw or "c0", True
        elif mode == "lie" and nxt is None:
            has_more = True
        elif (mode == "lie_empty" and not rows) or (mode == "lie_empty" and nxt is None):
            nxt, has_more = f"c{offset + limit}", True
        return JSONResponse({"data": rows, "meta": {"next_cursor": nxt}, "has_more": has_more})

    async def header_cursor(request: Request) -> Response:
        limit = ints(request, "limit", 10)
        raw = request.query_params.get("cursor")
        offset = int(raw) if raw else 0
        rows = window(request, offset, limit)
        headers = (
            {"X-Next-Cursor": str(offset + limit)} if window(request, offset + limit, 1) else {}
        )
        return JSONResponse(rows, headers=headers)

    async def offset(request: Request) -> Response:
        start = ints(request, "offset", 0)
        limit = min(ints(request, "limit", 10), ints(request, "cap", 10_000))
        body: dict[str, Any] = {"items": window(request, start, limit)}
        if request.query_params.get("total") == "1" or request.url.path.startswith("/v1/"):
            body["total"] = ints(request, "n", 25)
        delay = float(request.query_params.get("delay", "0"))
        if delay:
            await asyncio.sleep(delay)
        return JSONResponse(body)

    async def pages(request: Request) -> Response:
        page = ints(request, "page", 1)
        per = ints(request, "per_page", 10)
        body: dict[str, Any] = {"results": window(request, (page - 1) * per, per)}
        if request.query_params.get("counts") == "1" or request.url.path.startswith("/v1/"):
            body["total_pages"] = math.ceil(ints(request, "n", 25) / per)
        return JSONResponse(body)

    def follow_target(request: Request, page: int, rows_after: bool) -> str | None:
        mode = request.query_params.get("mode", "")
        if mode == "cycle" and page == 3:
            return page_url(request, page=2)
        if not rows_after:
            return page_url(request, page=page) if mode == "self" else None
        nxt = page_url(request, page=page + 1)
        if request.query_params.get("other") == "1" and page == 1 and server.peer is not None:
            return server.peer.url + nxt
        if request.query_params.get("abs") == "1":
            return server.url + nxt
        return nxt

    async def next_url(request: Request) -> Response:
        page = ints(request, "page", 1)
        per = ints(request, "per", 10)
        rows = window(request, (page - 1) * per, per)
        nxt = follow_target(request, page, bool(window(request, page * per, 1)))
        return JSONResponse({"data": rows, "links": {"next": nxt}})

    async def link(request: Request) -> Response:
        page = ints(request, "page", 1)
        per = ints(request, "per", 10)
        rows = window(request, (page - 1) * per, per)
        nxt = follow_target(request, page, bool(window(request, page * per, 1)))
        parts = [f'<{page_url(request, page=1)}>; rel="first"']
        if nxt:
            parts.append(f'<{nxt}>; rel="next"')
        return JSONResponse(rows, headers={"Link": ", ".join(parts)})

    async def single(request: Request) -> Response:
        rows = window(request, 0, ints(request, "n", 3))
        # ?nest=1: the records one level deeper, at data.items.
        return JSONResponse({"data": {"items": rows} if ints(request, "nest", 0) else rows})

    async def orgs(request: Request) -> Response:
        return JSONResponse([{"id": name, "repos": count} for name, count in ORGS.items()])

    async def repos(request: Request) -> Response:
        org = request.path_params["org"]
        if org not in ORGS:
            return JSONResponse({"error": "no such org"}, status_code=404)
        page = ints(request, "page", 1)
        per = ints(request, "per_page", 5)
        names = [{"name": f"{org}-repo-{i}"} for i in range(1, ORGS[org] + 1)]
        return JSONResponse(names[(page - 1) * per : page * per])

    async def status(request: Request) -> Response:
        code = int(request.path_params["code"])
        headers = {"Retry-After": state().retry_after} if code in (429, 503) else {}
        return JSONResponse({"error": f"status {code}"}, status_code=code, headers=headers)

    async def redirect(request: Request) -> Response:
        to = request.query_params.get("to", "same")
        target = "/single?n=2"
        if to == "other" and server.peer is not None:
            target = server.peer.url + target
        return Response(status_code=302, headers={"Location": target})

    async def slow(request: Request) -> Response:
        await asyncio.sleep(float(request.query_params.get("delay", "2")))
        return JSONResponse([{"ok": True}])

    async def text(request: Request) -> Response:
        return Response("<html>not json</html>", media_type="text/html")

    async def sink(request: Request) -> Response:
        """A writable collection: POST/PUT/PATCH store, GET lists; Idempotency-Key honoured."""
        st = state()
        name = request.path_params["name"]
        if request.method == "GET":
            with st.lock:
                return JSONResponse(list(st.sinks.get(name, [])))
        key = request.headers.get("idempotency-key")
        with st.lock:
            if key is not None and key in st.idempotent:
                return JSONResponse(st.idempotent[key], headers={"Idempotent-Replayed": "true"})
        body = json.loads(await request.body())
        if (
            isinstance(body, dict)
            and list(body) == ["records"]
            and isinstance(body["records"], list)
        ):
            body = body["records"]
        rows = body if isinstance(body, list) else [body]
        with st.lock:
            st.sinks.setdefault(name, []).extend(rows)
            answer = {"stored": len(rows)}
            if key is not None:
                st.idempotent[key] = answer
        fail_after = getattr(request.state, "fail_after", None)
        if fail_after is not None:
            return JSONResponse({"error": f"injected {fail_after} after storing"}, fail_after)
        return JSONResponse(answer, status_code=201)

    routes = [
        Route("/oauth/token", guard(token, auth=False), methods=["POST"]),
        Route("/cursor", guard(cursor)),
        Route("/header-cursor", guard(header_cursor)),
        Route("/offset", guard(offset)),
        Route("/pages", guard(pages)),
        Route("/next-url", guard(next_url)),
        Route("/link", guard(link)),
        Route("/single", guard(single), methods=["GET", "POST"]),
        Route("/orgs", guard(orgs)),
        Route("/orgs/{org}/repos", guard(repos)),
        Route("/status/{code:int}", guard(status)),
        Route("/redirect", guard(redirect)),
        Route("/slow", guard(slow)),
        Route("/html", guard(text)),
        Route("/sink/{name}", guard(sink), methods=["GET", "POST", "PUT", "PATCH"]),
        Route("/sink/{name}/{item}", guard(sink), methods=["POST", "PUT", "PATCH"]),
        # The imaginary API of plugins/rest/examples/*.yaml.
        Route("/v1/events", guard(cursor)),
        Route("/v1/issues", guard(link)),
        Route("/v1/audit", guard(header_cursor)),
        Route("/v1/customers", guard(offset)),
        Route("/v1/invoices", guard(next_url)),
        Route("/v1/orders", guard(pages)),
        Route("/v1/orgs", guard(orgs)),
        Route("/v1/orgs/{org}/repos", guard(repos)),
        Route("/v1/me", guard(single)),
    ]
    return _DropMiddleware(Starlette(routes=routes))


class _Drop:
    """Marker response: the middleware sends half a body and drops the connection."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"data": [{"id": 1', "more_body": True})
        raise _Dropped


class _Dropped(Exception):
    pass


class _DropMiddleware:
    """Turns `_Dropped` into a closed connection without uvicorn logging a traceback."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        except _Dropped:
            # Returning after a partial body with more_body=True makes uvicorn close the
            # connection: the client sees a response cut short.
            return


@pytest.fixture(scope="session")
def http_servers(request: pytest.FixtureRequest) -> Iterator[tuple[HttpServer, HttpServer]]:
    """The ``api`` and ``other`` servers, started once per session."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        service_unavailable(f"starlette/uvicorn not installed ({exc.name})")
    host = request.config.getoption("--http-bind")
    api = HttpServer("api", host, free_port())
    other = HttpServer("other", host, free_port())
    api.peer, other.peer = other, api
    try:
        api.start()
        other.start()
    except (RuntimeError, OSError) as exc:
        api.stop()
        other.stop()
        service_unavailable(f"cannot start the test HTTP servers: {exc}")
    yield api, other
    api.stop()
    other.stop()


@pytest.fixture
def http_api(http_servers: tuple[HttpServer, HttpServer]) -> HttpServer:
    """The API server, its switches and log reset."""
    api, other = http_servers
    api.reset()
    other.reset()
    return api


@pytest.fixture
def http_other(http_servers: tuple[HttpServer, HttpServer], http_api: HttpServer) -> HttpServer:
    """The other-origin server (no auth required there), reset."""
    other = http_servers[1]
    other.state.require_auth = False
    return other


# --- a forwarding proxy ----------------------------------------------------------------------

#: Headers that belong to one connection (RFC 9110 7.6.1), not forwarded.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class ForwardProxy:
    """
    A plain-http forwarding proxy: logs each absolute-form request, then sends it on.

    ``log`` holds a `Seen` per request, whose ``path`` is the request target as the
    client wrote it (``http://host:port/path?query`` when it talks to a proxy).
    """

    def __init__(self, host: str) -> None:
        self.log: list[Seen] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a client expects of a proxy

            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def _forward(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                target = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with proxy.lock:
                    query = {k: v[0] for k, v in parse_qs(target.query).items()}
                    proxy.log.append(Seen(self.command, self.path, query, headers, body, arrived))
                if target.scheme != "http" or not target.hostname:
                    self._reply(400, [], b"absolute-form http:// request target expected")
                    return
                upstream = http.client.HTTPConnection(
                    target.hostname, target.port or 80, timeout=10
                )
                try:
                    upstream.request(
                        self.command,
                        target.path + (f"?{target.query}" if target.query else ""),
                        body=body or None,
                        headers={k: v for k, v in headers.items() if k not in _HOP_BY_HOP},
                    )
                    answer = upstream.getresponse()
                    data = answer.read()
                    kept = [
                        (k, v)
                        for k, v in answer.getheaders()
                        if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
                    ]
                    self._reply(answer.status, kept, data)
                finally:
                    upstream.close()

            def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: stderr is not where tests look

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
            daemon_threads = True

        self._server = Server((host, 0), Handler)
        port = self._server.server_address[1]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http-proxy", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@pytest.fixture(scope="session")
def http_proxy_server(request: pytest.FixtureRequest) -> Iterator[ForwardProxy]:
    """The forwarding proxy, started once per session."""
    try:
        proxy = ForwardProxy(request.config.getoption("--http-bind"))
    except OSError as exc:
        service_unavailable(f"cannot start the test HTTP proxy: {exc}")
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def http_proxy(http_proxy_server: ForwardProxy) -> ForwardProxy:
    """The forwarding proxy, its log emptied."""
    with http_proxy_server.lock:
        http_proxy_server.log.clear()
    return http_proxy_server


# --- the same API over HTTPS ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HttpsApi:
    """The API over TLS, and the CAs to verify it with (or not)."""

    #: Certificate for ``localhost`` and the bind address, signed by ``ca``.
    server: HttpServer
    #: Certificate for ``DNS:localhost`` only, signed by ``ca``; its URL uses the bind
    #: address, which the certificate does not name.
    localhost_only: HttpServer
    #: The CA bundle that verifies both servers.
    ca: Path
    #: A CA that signed neither.
    other_ca: Path


def _san_of(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"DNS:localhost,DNS:{host}"
    return f"DNS:localhost,IP:{host}"


@pytest.fixture(scope="session")
def https_servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpsApi]:
    """The two HTTPS servers and their CAs, started once per session."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        service_unavailable(f"starlette/uvicorn not installed ({exc.name})")
    if not openssl_available():
        service_unavailable("openssl is needed to make the test certificates")
    host = request.config.getoption("--http-bind")
    certs = tmp_path_factory.mktemp("https-certs")
    make_certs(certs, san=_san_of(host))
    cert, key = make_server_cert(certs, "localhost-only", san="DNS:localhost")
    api = HttpsApi(
        server=HttpServer(
            "https",
            host,
            free_port(),
            certfile=certs / "server.crt",
            keyfile=certs / "server.key",
        ),
        localhost_only=HttpServer(
            "https-localhost-only", host, free_port(), certfile=cert, keyfile=key
        ),
        ca=certs / "ca.crt",
        other_ca=certs / "other.crt",
    )
    try:
        api.server.start()
        api.localhost_only.start()
    except (RuntimeError, OSError) as exc:
        api.server.stop()
        api.localhost_only.stop()
        service_unavailable(f"cannot start the test HTTPS servers: {exc}")
    yield api
    api.server.stop()
    api.localhost_only.stop()


@pytest.fixture
def https_api(https_servers: HttpsApi) -> HttpsApi:
    """The HTTPS servers (switches and logs reset) and their CAs."""
    https_servers.server.reset()
    https_servers.localhost_only.reset()
    return https_servers
