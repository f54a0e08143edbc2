"""
`headwater.testing.FaultServer`: a loopback JSON API with switchable faults.

Standard library only (``http.server.ThreadingHTTPServer`` in a daemon thread), so
plugin authors can test retries, back-off, token refresh and pagination loops offline
without adding a dependency. Import it from `headwater.testing`; this module is private.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """A request the `FaultServer` received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    #: What the server did: ``"ok"``, ``"fault 429"``, ``"dropped"``, ``"unauthorized"``...
    outcome: str = "ok"


@dataclasses.dataclass
class _Fault:
    kind: str  # "status" or "drop"
    remaining: int
    status: int = 0
    retry_after: str | None = None
    path: str | None = None
    body: bytes | None = None


class FaultServer:
    """
    A JSON API on ``127.0.0.1`` with faults you switch on: for HTTP connectors' tests.

    Endpoints (``url`` is the base):

    ``GET /items?page=N[&page_size=M]``
        ``{"items": [...], "page": N, "next": URL | null}`` plus a ``Link: <URL>;
        rel="next"`` header; pages are 1-based.
    ``GET /items/<id>``
        One record, or 404.
    ``POST /oauth/token``
        OAuth2 client credentials (form fields or HTTP Basic) →
        ``{"access_token", "token_type": "Bearer", "expires_in"}``; 401 ``invalid_client``.
    ``GET /health``
        ``{"ok": true}``.

    With ``require_auth=True``, ``/items`` needs ``Authorization: Bearer <token>`` from
    ``/oauth/token`` (or `issue_token` in a fixture) and answers 401 with
    ``WWW-Authenticate: Bearer error="invalid_token"`` otherwise.

    Faults (each method returns the server, so they chain):

    * `rate_limit` — 429 with ``Retry-After`` (seconds or an HTTP date) for the next N requests;
    * `server_errors` — a burst of N 5xx responses;
    * `fail_next` — any status for the next N requests;
    * `drop_connections` — close the connection without answering, N times;
    * `expire_tokens` — every issued token stops working (as if it expired);
    * ``self_linking_last_page = True`` — the last page's ``next`` points to itself.

    Every request is recorded in `requests`. Use it as a context manager, or through the
    ``fault_server`` fixture of `headwater.testing`.
    """

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]] | None = None,
        *,
        page_size: int = 10,
        require_auth: bool = False,
        client_id: str = "contract-client",
        client_secret: str = "contract-client-secret",  # noqa: S107 - a test fixture's value
        token_ttl: int = 3600,
    ) -> None:
        self.records: list[dict[str, Any]] = [
            dict(r) for r in (records if records is not None else _default_records(25))
        ]
        self.page_size = page_size
        self.require_auth = require_auth
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.self_linking_last_page = False
        self.requests: list[RecordedRequest] = []
        self.tokens_issued = 0
        self._tokens: set[str] = set()
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FaultServer:
        """Listen on a free loopback port and serve from a daemon thread."""
        if self._server is not None:
            return self
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on."""
        if self._server is None:
            raise RuntimeError("the FaultServer is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        """The OAuth2 token endpoint."""
        return f"{self.url}/oauth/token"

    @property
    def items_url(self) -> str:
        """The first page of ``/items``."""
        return f"{self.url}/items"

    # --- faults ------------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        path: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> FaultServer:
        """Answer the next ``times`` requests (under ``path``, if given) with ``status``."""
        payload = json.dumps(dict(body) if body else {"error": f"injected {status}"}).encode()
        with self._lock:
            self._faults.append(
                _Fault(
                    "status",
                    times,
                    status=status,
                    retry_after=None if retry_after is None else _retry_after(retry_after),
                    path=path,
                    body=payload,
                )
            )
        return self

    def rate_limit(
        self, *, times: int = 1, retry_after: float | str = 1, path: str | None = None
    ) -> FaultServer:
        """429 Too Many Requests with ``Retry-After`` (seconds, or an HTTP-date string)."""
        return self.fail_next(429, times=times, retry_after=retry_after, path=path)

    def server_errors(
        self, *, times: int = 3, status: int = 503, path: str | None = None
    ) -> FaultServer:
        """A burst of ``times`` 5xx answers (503 by default)."""
        return self.fail_next(status, times=times, path=path)

    def drop_connections(self, *, times: int = 1, path: str | None = None) -> FaultServer:
        """Close the connection without any response for the next ``times`` requests."""
        with self._lock:
            self._faults.append(_Fault("drop", times, path=path))
        return self

    def expire_tokens(self) -> FaultServer:
        """Invalidate every token issued so far; clients must fetch a new one."""
        with self._lock:
            self._tokens.clear()
        return self

    def reset(self) -> FaultServer:
        """Clear faults, tokens and the request log."""
        with self._lock:
            self._faults.clear()
            self._tokens.clear()
            self.requests.clear()
            self.self_linking_last_page = False
        return self

    # --- request handling (called from server threads) ------------------------------------

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and (fault.path is None or path.startswith(fault.path)):
                    fault.remaining -= 1
                    return fault
        return None

    def issue_token(self) -> str:
        """A valid access token, as if fetched from ``/oauth/token`` (for connector fixtures)."""
        import secrets

        token = f"tok-{secrets.token_hex(12)}"
        with self._lock:
            self._tokens.add(token)
            self.tokens_issued += 1
        return token

    def _token_valid(self, token: str) -> bool:
        with self._lock:
            return token in self._tokens

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


def _default_records(count: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"item-{i}", "value": i * 10} for i in range(1, count + 1)]


def _retry_after(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


def _make_handler(owner: FaultServer) -> type[http.server.BaseHTTPRequestHandler]:
    """The request handler class bound to ``owner``."""
    import base64
    from urllib.parse import parse_qs, urlsplit

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "headwater-fault-server"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read owner.requests instead

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def do_PUT(self) -> None:
            self._handle()

        def do_DELETE(self) -> None:
            self._handle()

        def _send(
            self, status: int, payload: Any, headers: Mapping[str, str] | None = None
        ) -> None:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            query = parse_qs(parts.query)

            def record(outcome: str) -> None:
                owner._record(
                    RecordedRequest(
                        self.command, parts.path, query, dict(self.headers.items()), body, outcome
                    )
                )

            fault = owner._take_fault(parts.path)
            if fault is not None and fault.kind == "drop":
                record("dropped")
                self.close_connection = True
                return
            if fault is not None:
                record(f"fault {fault.status}")
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                self._send(fault.status, fault.body or b"{}", extra)
                return
            if parts.path == "/health":
                record("ok")
                self._send(200, {"ok": True})
            elif parts.path == "/oauth/token" and self.command == "POST":
                self._token(body, record)
            elif parts.path == "/items" or parts.path.startswith("/items/"):
                if owner.require_auth and not self._authorized():
                    record("unauthorized")
                    self._send(
                        401,
                        {"error": "invalid_token"},
                        {"WWW-Authenticate": 'Bearer error="invalid_token"'},
                    )
                    return
                record("ok")
                if parts.path == "/items":
                    self._page(query)
                else:
                    self._item(parts.path.rsplit("/", 1)[-1])
            else:
                record("not found")
                self._send(404, {"error": "not_found"})

        def _authorized(self) -> bool:
            header = self.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            return scheme.lower() == "bearer" and owner._token_valid(token.strip())

        def _token(self, body: bytes, record: Callable[[str], None]) -> None:
            form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            header = self.headers.get("Authorization", "")
            if header.lower().startswith("basic "):
                try:
                    decoded = base64.b64decode(header[6:]).decode("utf-8")
                except ValueError:
                    decoded = ":"
                client_id, _, client_secret = decoded.partition(":")
            if form.get("grant_type") != "client_credentials":
                record("bad grant")
                self._send(400, {"error": "unsupported_grant_type"})
                return
            if client_id != owner.client_id or client_secret != owner.client_secret:
                record("invalid client")
                self._send(401, {"error": "invalid_client"})
                return
            record("token")
            self._send(
                200,
                {
                    "access_token": owner.issue_token(),
                    "token_type": "Bearer",
                    "expires_in": owner.token_ttl,
                },
            )

        def _page(self, query: Mapping[str, list[str]]) -> None:
            try:
                page = int(query.get("page", ["1"])[0])
                size = int(query.get("page_size", [str(owner.page_size)])[0])
            except ValueError:
                self._send(400, {"error": "page and page_size must be integers"})
                return
            if page < 1 or size < 1:
                self._send(400, {"error": "page and page_size must be >= 1"})
                return
            start = (page - 1) * size
            items = owner.records[start : start + size]
            last = start + size >= len(owner.records)
            base = f"{owner.url}/items"
            suffix = f"&page_size={size}" if "page_size" in query else ""
            if last:
                following = f"{base}?page={page}{suffix}" if owner.self_linking_last_page else None
            else:
                following = f"{base}?page={page + 1}{suffix}"
            headers = {"Link": f'<{following}>; rel="next"'} if following else {}
            self._send(200, {"items": items, "page": page, "next": following}, headers)

        def _item(self, key: str) -> None:
            for record in owner.records:
                if str(record.get("id")) == key:
                    self._send(200, record)
                    return
            self._send(404, {"error": "not_found"})

    return Handler
