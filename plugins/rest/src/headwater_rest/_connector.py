"""
The ``rest`` connector: a declarative HTTP API reader.

A config names the API (``base_url``, headers, auth) and its streams (path, record
selector, pagination, incremental cursor, parent stream). Reading a stream runs its
pagination flow (`headwater_rest._paginate`) through a sync or async driver whose
requests go through `headwater_rest._http` (origin policy, retries, breaker, rate
limit). The sync and async paths share everything but the driver: `_StreamRun` turns
pages into batches and states for both.

State of a stream (opaque to callers, JSON)::

    {"stream": "items", "position": {"token": {...}, "skip": 0} | null, "done": false,
     "since": ..., "max": ...}            # since/max only with an incremental cursor

``position`` is where the next record is (the page token and how many of that page's
records to skip), so resuming yields exactly the records after the batch. A ``done``
state resumes to nothing, or — for incremental streams — to a new run asking for
records since the highest cursor value seen. Child streams (``parent``) keep the
parent's state before the current parent batch, the index of the parent record, and
the child's own state for that record.
"""

from __future__ import annotations

import builtins
import contextlib
import re
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

from headwater import (
    Batch,
    Capability,
    ConfigError,
    Connector,
    Estimate,
    HeadwaterError,
    Item,
    Partition,
    Secret,
    State,
    WriteResult,
)
from headwater.toolkit import (
    RetryPolicy,
    check_part,
    forget_after_fork,
    get_logger,
    is_loopback,
)
from headwater_rest._config import (
    BUILTIN_AUTH_TYPES,
    BUILTIN_PAGINATION_TYPES,
    ParentConfig,
    PluginAuth,
    PluginPagination,
    RestConfig,
    StreamConfig,
    has_credentials,
    is_credential_name,
    resolve_client_cert,
    resolve_values,
)
from headwater_rest._paginate import (
    OffsetLimit,
    Page,
    PageFlow,
    PageNumber,
    PageRequest,
    Position,
    RecordSelector,
    Strategy,
    make_strategy,
    page_flow,
    value_at,
)

if TYPE_CHECKING:
    import httpx

    from headwater import Registry
    from headwater.toolkit import CredentialResolver
    from headwater_rest._http import Http, RequestSpec
    from headwater_rest._write import RestWriteResult, Writer

logger = get_logger("headwater_rest.connector")
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_READ_OPTIONS = frozenset({"max_pages", "max_records"})
#: Query parameters of `RestConnector.request`.
Params = Mapping[str, Any] | None


class RestConnector(Connector[RestConfig]):
    """A REST API described as data: streams, pagination, auth, retries, resumable state."""

    id = "rest"
    Config = RestConfig
    summary = "REST/JSON APIs in YAML or Python: pagination, OAuth2, retries, resume"
    capabilities = frozenset(
        {
            Capability.CHECK,
            Capability.LIST,
            Capability.READ,
            Capability.RESUME,
            Capability.METADATA,
            Capability.WRITE,
            Capability.PARTITIONS,
            # Declared for every config; a stream whose write is not idempotent (a POST or
            # PATCH without write.idempotency_header) is refused by write_part, naming it.
            Capability.PART_WRITES,
        }
    )

    def __init__(
        self,
        config: RestConfig | dict[str, Any],
        *,
        retry_if: Callable[[httpx.Response], bool] | None = None,
        **kwargs: Any,
    ) -> None:
        """
        ``retry_if``: a predicate over a response (its body read); ``True`` tries it again,
        as a status in ``retry.statuses`` would be (beside the config's ``retry.on_response``).
        """
        super().__init__(config, **kwargs)
        if retry_if is not None and not callable(retry_if):
            raise ConfigError(
                "retry_if must be a callable taking an httpx.Response", field="retry_if"
            )
        self._retry_if = retry_if
        self._http_obj: Http | None = None
        self._http_lock = threading.Lock()
        self._client_obj: httpx.Client | None = None
        self._check_plain_http()
        # In a fork's child the HTTP clients are dropped, unclosed: their sockets are the
        # parent's (see headwater.toolkit.forget_after_fork); first use makes new ones.
        forget_after_fork(self, RestConnector._forget_clients_after_fork)

    def _forget_clients_after_fork(self) -> builtins.list[Any]:
        inherited = [c for c in (self._http_obj, self._client_obj) if c is not None]
        self._http_lock = threading.Lock()
        self._http_obj = None
        self._client_obj = None
        return inherited

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> RestConnector:
        """
        ``https://api.example.com/v1/items?status=open`` → one stream, ``v1/items``.

        Stream settings may be given as overrides: ``records`` (``data.items``),
        ``pagination`` (a mapping or a type name), ``primary_key``, ``max_pages``,
        ``max_records``; everything else is connector config (``auth``, ``headers``...).
        """
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"not an http(s) URL: {url!r}", field="base_url")
        if parts.username or parts.password:
            raise ConfigError("put credentials in auth, not in the URL", field="base_url")
        path = parts.path or "/"
        stream: dict[str, Any] = {"path": path, "params": dict(parse_qsl(parts.query))}
        for key in ("records", "primary_key", "max_pages", "max_records", "method"):
            if key in overrides:
                stream[key] = overrides.pop(key)
        if "pagination" in overrides:
            pagination = overrides.pop("pagination")
            stream["pagination"] = (
                {"type": pagination} if isinstance(pagination, str) else pagination
            )
        name = path.strip("/") or "root"
        config = {
            "base_url": f"{parts.scheme}://{parts.netloc}",
            "streams": {name: stream},
            **overrides,
        }
        return cls(config)

    def _check_plain_http(self) -> None:
        c = self.config
        sent_with_every_request = (c.headers, c.params)
        in_streams = [v for s in c.streams.values() for v in (s.headers, s.params)]
        if c.auth.type == "none" and not any(
            map(has_credentials, [*sent_with_every_request, *in_streams])
        ):
            return
        if c.verify is False and not is_loopback(urlsplit(c.base_url).hostname):
            raise ConfigError(
                "refusing to send credentials without TLS verification to a non-loopback host",
                field="verify",
                hint="give the server's CA bundle in verify instead of turning verification off",
            )
        for field, url in (
            ("base_url", c.base_url),
            ("auth.token_url", getattr(c.auth, "token_url", None)),
            ("auth.issuer", getattr(c.auth, "issuer", None)),
        ):
            if not isinstance(url, str):
                continue
            parts = urlsplit(url)
            if parts.scheme == "http" and not is_loopback(parts.hostname):
                raise ConfigError(
                    f"refusing to send credentials over plain http to {parts.hostname}",
                    field=field,
                    hint="use https (plain http is allowed only to localhost / 127.0.0.1)",
                )

    # --- connect time ---------------------------------------------------------------------------

    @property
    def http(self) -> Http:
        """The connector's HTTP layer; built (and credentials resolved) on first use."""
        if self._http_obj is None:
            with self._http_lock:
                if self._http_obj is None:
                    from headwater_rest._http import Http

                    # Loading the plugins for their resolvers is most of a first request's
                    # own time: done only when a header, a param or the TLS client
                    # certificate names a secret to resolve (auth asks for them itself).
                    resolvers = (
                        self.registry.credential_resolvers() if self._names_secrets() else {}
                    )
                    self._http_obj = Http(
                        self.config,
                        self._make_auth(),
                        headers=resolve_values(self.config.headers, "headers", resolvers),
                        params=resolve_values(self.config.params, "params", resolvers),
                        client_cert=resolve_client_cert(self.config.tls, resolvers),
                        retry_if=self._retry_if,
                    )
        return self._http_obj

    def _names_secrets(self) -> bool:
        """Whether the headers, params or TLS settings hold a secret to resolve."""
        c = self.config
        values = (*c.headers.values(), *c.params.values())
        return c.tls is not None or any(isinstance(value, Secret) for value in values)

    def _make_auth(self) -> httpx.Auth | None:
        auth = self.config.auth
        if auth.type == "none":
            return None
        settings: dict[str, Any]
        if isinstance(auth, PluginAuth):
            settings = auth.settings()
            factory = self.registry.auth_schemes().get(auth.type)
            if factory is None:
                known = ", ".join(sorted({*BUILTIN_AUTH_TYPES, *self.registry.auth_schemes()}))
                raise ConfigError(
                    f"unknown auth type {auth.type!r} (known: {known})",
                    field="auth.type",
                    hint="install the plugin that provides it",
                )
        else:
            from headwater_rest._auth import BUILTIN_SCHEMES

            settings = {k: getattr(auth, k) for k in type(auth).model_fields if k != "type"}
            factory = BUILTIN_SCHEMES[auth.type]
        resolvers = self.registry.credential_resolvers()

        def secret(field: str) -> str:
            value = settings.get(field)
            if value is None:
                raise ConfigError(f"auth.{field} is not set", field=f"auth.{field}")
            return Secret.parse(value).resolve(f"auth.{field}", resolvers)

        try:
            made = factory(settings, secret)
        except HeadwaterError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"auth scheme {auth.type!r} failed to build ({type(exc).__name__})", field="auth"
            ) from None
        import httpx

        if not isinstance(made, httpx.Auth):
            raise ConfigError(
                f"auth scheme {auth.type!r} did not return an httpx.Auth", field="auth"
            )
        return made

    def strategy(self, pagination: Any) -> Strategy:
        """The pagination strategy for a stream's ``pagination`` config."""
        if not isinstance(pagination, PluginPagination):
            return make_strategy(pagination)
        styles = _pagination_styles(self.registry)
        factory = styles.get(pagination.type)
        if factory is None:
            known = ", ".join(sorted({*BUILTIN_PAGINATION_TYPES, *styles}))
            raise ConfigError(
                f"unknown pagination type {pagination.type!r} (known: {known})",
                field="pagination.type",
                hint="install the plugin that provides it",
            )
        try:
            made = factory(pagination.settings())
        except HeadwaterError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"pagination style {pagination.type!r} failed to build ({type(exc).__name__})",
                field="pagination",
            ) from None
        if not isinstance(made, Strategy):
            raise ConfigError(
                f"pagination style {pagination.type!r} did not return a Strategy",
                field="pagination",
            )
        made.stop_on_empty = pagination.stop_on_empty
        return made

    # --- operations -----------------------------------------------------------------------------

    def _check_spec(self) -> RequestSpec:
        from headwater_rest._http import RequestSpec

        if self.config.check_path:
            return RequestSpec(path=self.config.check_path)
        for stream in self.config.streams.values():
            if stream.parent is None:
                run = _StreamRun(self, "", stream, None, None, {})
                return run.spec(run.strategy.request(run.strategy.first()))
        return RequestSpec(path="/")

    def check_connection(self) -> str:
        spec = self._check_spec()
        self.http.fetch(spec, policy=RetryPolicy.NONE)
        return self._answered(spec)

    async def acheck_connection(self) -> str:
        spec = self._check_spec()
        async with self.http.aclient() as client:
            await self.http.afetch(client, spec, policy=RetryPolicy.NONE)
        return self._answered(spec)

    def _answered(self, spec: RequestSpec) -> str:
        return f"{self.http.endpoint.build(spec).what} answered"

    def list(self, path: str | None = None) -> Iterator[Item]:
        if path:
            raise ConfigError(
                "the rest connector's streams are flat; list takes no path", field="path"
            )
        for name, stream in self.config.streams.items():
            extra: dict[str, Any] = {"path": stream.path, "pagination": stream.pagination.type}
            if stream.parent is not None:
                extra["parent"] = stream.parent.stream
            yield Item(name, "stream", extra=extra)

    def metadata(self, item: str) -> dict[str, Any]:
        stream = self._stream(item)
        return {
            "name": item,
            "path": stream.path,
            "method": stream.method,
            "records": stream.records,
            "primary_key": list(stream.primary_key),
            "pagination": stream.pagination.model_dump(mode="json"),
            "incremental": stream.incremental.model_dump(mode="json")
            if stream.incremental
            else None,
            "parent": stream.parent.stream if stream.parent else None,
        }

    def _stream(self, name: str) -> StreamConfig:
        stream = self.config.streams.get(name)
        if stream is None:
            known = ", ".join(self.config.streams) or "none"
            raise ConfigError(f"no stream {name!r} (streams: {known})", field="stream")
        return stream

    def _options(self, options: Mapping[str, Any]) -> dict[str, int | None]:
        unknown = set(options) - _READ_OPTIONS
        if unknown:
            raise ConfigError(f"rest: unknown read option(s): {', '.join(sorted(unknown))}")
        limits: dict[str, int | None] = {}
        for key in _READ_OPTIONS:
            value = options.get(key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{key} must be a positive integer", field=key)
            limits[key] = value
        return limits

    def read(
        self,
        stream: str,
        state: State | None = None,
        *,
        batch_size: int | None = None,
        **options: Any,
    ) -> Iterator[Batch]:
        """
        Batches of ``stream``'s records (one per page unless ``batch_size`` or the config's
        ``batch_size`` says otherwise), each with the state to resume after it.

        Options: ``max_pages`` / ``max_records`` override the stream's limits for this run.
        """
        config = self._stream(stream)
        limits = self._options(options)
        size = batch_size or self.config.batch_size
        if config.parent is not None:
            walk = _ChildWalk(stream, config, config.parent, state, limits)
            yield from self._read_child(walk, size)
            return
        run = _StreamRun(self, stream, config, state, size, limits)
        yield from run.sync()

    def estimate(self, stream: str, **options: Any) -> Estimate:
        """
        The record count the stream's first page states (offset and page pagination with
        a ``total_path``): one request. Other streams: unknown. Not exact: the API says it.
        """
        config = self._stream(stream)
        strategy = self.strategy(config.pagination)
        total = getattr(strategy, "total", None)
        if config.parent is not None or total is None:
            return Estimate()
        if getattr(config.pagination, "total_path", None) is None:
            return Estimate()
        run = _StreamRun(self, stream, config, None, None, self._options(options))
        response = self.http.fetch(run.spec(strategy.request(strategy.first())))
        rows = total(response)
        if rows is not None and run.max_records is not None:
            rows = min(rows, run.max_records)
        return Estimate(rows=rows)

    async def aread(
        self,
        stream: str,
        state: State | None = None,
        *,
        batch_size: int | None = None,
        **options: Any,
    ) -> AsyncIterator[Batch]:
        """Async twin of `read`, on httpx's async client."""
        config = self._stream(stream)
        limits = self._options(options)
        size = batch_size or self.config.batch_size
        async with self.http.aclient() as client:
            async for batch in self._aread(client, stream, config, state, size, limits):
                yield batch

    async def _aread(
        self,
        client: httpx.AsyncClient,
        stream: str,
        config: StreamConfig,
        state: State | None,
        size: int | None,
        limits: dict[str, int | None],
    ) -> AsyncIterator[Batch]:
        if config.parent is not None:
            walk = _ChildWalk(stream, config, config.parent, state, limits)
            async for batch in self._aread_child(client, walk, size):
                yield batch
            return
        run = _StreamRun(self, stream, config, state, size, limits)
        async for batch in run.asynchronous(client):
            yield batch

    # --- child streams ----------------------------------------------------------------------

    def _read_child(self, walk: _ChildWalk, size: int | None) -> Iterator[Batch]:
        if walk.finished:
            return
        for parent_batch in self.read(walk.parent.stream, walk.parent_state):
            for index, run in walk.runs(self, parent_batch, size):
                yield from walk.wrapped(run.sync(), index)
            if walk.stopped:
                return
        yield walk.final()

    async def _aread_child(
        self, client: httpx.AsyncClient, walk: _ChildWalk, size: int | None
    ) -> AsyncIterator[Batch]:
        if walk.finished:
            return
        parent = walk.parent
        parent_config = self._stream(parent.stream)
        parents = self._aread(
            client, parent.stream, parent_config, walk.parent_state, self.config.batch_size, {}
        )
        async for parent_batch in parents:
            for index, run in walk.runs(self, parent_batch, size):
                async for batch in run.asynchronous(client):
                    if len(batch):
                        yield walk.wrap(batch, index)
            if walk.stopped:
                return
        yield walk.final()

    # --- partitions -----------------------------------------------------------------------------

    def partitions(self, stream: str, count: int, **options: Any) -> builtins.list[Partition]:
        """
        Split ``stream`` into at most ``count`` partitions that together hold each of its
        records once, in the read's order:

        * offset or page-number pagination whose first page states the total (``total_path``,
          ``total_pages_path``): ranges of consecutive pages, each read with the requests
          the whole read makes (one request here, for the first page);
        * a child stream: runs of consecutive parent records (the parent stream is read
          here; each partition carries its parent records);
        * any other stream (cursors, next URLs, incremental, limits): one partition, the
          whole stream.
        """
        return self._drive_split(self._split(stream, count, options))

    async def apartitions(
        self, stream: str, count: int, **options: Any
    ) -> builtins.list[Partition]:
        """Async twin of `partitions`, on httpx's async client."""
        flow = self._split(stream, count, options)
        reply: Any = None
        async with self.http.aclient() as client:
            while True:
                try:
                    need = flow.send(reply)
                except StopIteration as stop:
                    parts: builtins.list[Partition] = stop.value
                    return parts
                if isinstance(need, str):
                    reply = [r async for b in self.aread(need) for r in b.rows()]
                else:
                    reply = await self.http.afetch(client, need)

    def _drive_split(
        self, flow: Generator[Any, Any, builtins.list[Partition]]
    ) -> builtins.list[Partition]:
        """Run a split flow with the sync client (`apartitions` is its async driver)."""
        reply: Any = None
        while True:
            try:
                need = flow.send(reply)
            except StopIteration as stop:
                parts: builtins.list[Partition] = stop.value
                return parts
            if isinstance(need, str):
                reply = [r for b in self.read(need) for r in b.rows()]
            else:
                reply = self.http.fetch(need)

    def _split(
        self, stream: str, count: int, options: Mapping[str, Any]
    ) -> Generator[Any, Any, builtins.list[Partition]]:
        """
        The split, sans I/O: it yields a parent stream's name (answered with that
        stream's records) or a `RequestSpec` (answered with its `PageResponse`).
        """
        if options:
            raise ConfigError(f"rest: unknown partition option(s): {', '.join(sorted(options))}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError("partition count must be at least 1", field="count")
        config = self._stream(stream)
        bounds: builtins.list[dict[str, Any]] = [{"kind": "whole"}]
        strategy = self.strategy(config.pagination)
        if count == 1 or config.max_pages is not None or config.max_records is not None:
            pass
        elif config.parent is not None:
            rows = yield config.parent.stream
            groups = _runs(rows, count) or [[]]
            bounds = [{"kind": "parents", "parents": group} for group in groups]
        elif config.incremental is None and isinstance(strategy, OffsetLimit | PageNumber):
            run = _StreamRun(self, stream, config, None, None, {})
            first = strategy.first()
            response = yield run.spec(strategy.request(first))
            records = run.select(response.body)
            if records and strategy.next_token(first, response, records) is not None:
                starts = [
                    g[0] for g in _runs([first, *strategy.plan(first, response, records)], count)
                ]
                ends: builtins.list[dict[str, Any] | None] = [*starts[1:], None]
                bounds = [
                    {"kind": "pages", "start": start, "end": end}
                    for start, end in zip(starts, ends, strict=True)
                ]
        n = len(bounds)
        return [Partition(stream, i, n, b) for i, b in enumerate(bounds)]

    def read_partition(
        self,
        partition: Partition,
        *,
        batch_size: int | None = None,
        state: State | None = None,
        **options: Any,
    ) -> Iterator[Batch]:
        """
        The records of one partition from `partitions`, in order; a batch's ``state``
        resumes the partition right after that batch.
        """
        kind, plan = self._partition_plan(partition, batch_size, state, options)
        if kind == "whole":
            yield from self.read(partition.stream, state, batch_size=batch_size)
        elif kind == "pages":
            yield from plan.sync()
        elif kind == "parents":
            walk, parents = plan
            for index, run in walk.runs(self, parents, batch_size or self.config.batch_size):
                yield from walk.wrapped(run.sync(), index)

    async def aread_partition(
        self,
        partition: Partition,
        *,
        batch_size: int | None = None,
        state: State | None = None,
        **options: Any,
    ) -> AsyncIterator[Batch]:
        """Async twin of `read_partition`, on httpx's async client."""
        kind, plan = self._partition_plan(partition, batch_size, state, options)
        if kind == "whole":
            async for batch in self.aread(partition.stream, state, batch_size=batch_size):
                yield batch
            return
        if kind == "nothing":
            return
        async with self.http.aclient() as client:
            if kind == "pages":
                async for batch in plan.asynchronous(client):
                    yield batch
                return
            walk, parents = plan
            for index, run in walk.runs(self, parents, batch_size or self.config.batch_size):
                async for batch in run.asynchronous(client):
                    if len(batch):
                        yield walk.wrap(batch, index)

    def _partition_plan(
        self,
        partition: Partition,
        batch_size: int | None,
        state: State | None,
        options: Mapping[str, Any],
    ) -> tuple[str, Any]:
        """
        What reading ``partition`` (from ``state``) takes, decided before any request:
        ``("whole", None)``, ``("pages", run)``, ``("parents", (walk, parent batch))`` or
        ``("nothing", None)`` (a state at the partition's end).
        """
        if options:
            raise ConfigError(f"rest: unknown read option(s): {', '.join(sorted(options))}")
        bounds = partition.bounds if isinstance(partition, Partition) else None
        kind = bounds.get("kind") if isinstance(bounds, dict) else None
        if kind not in ("whole", "pages", "parents"):
            raise ConfigError(
                "partition is not a rest partition",
                field="partition",
                hint="make the partitions with partitions() of this connector",
            )
        assert bounds is not None
        name = partition.stream
        config = self._stream(name)
        if kind == "whole":
            return "whole", None
        if state is not None and (not isinstance(state, dict) or state.get("stream") != name):
            raise ConfigError(f"state is not a rest state for stream {name!r}", field="state")
        size = batch_size or self.config.batch_size
        if kind == "parents":
            if config.parent is None:
                raise ConfigError(f"stream {name!r} has no parent stream", field="partition")
            walk = _ChildWalk(name, config, config.parent, state, {})
            if walk.finished:
                return "nothing", None
            return "parents", (walk, Batch(config.parent.stream, bounds["parents"], {}))
        strategy = self.strategy(config.pagination)
        if not isinstance(strategy, OffsetLimit | PageNumber):
            raise ConfigError(
                f"stream {name!r} is no longer paged by offset or page number",
                field="partition",
                hint="make the partitions again",
            )
        key = strategy.key_name
        stride = strategy.config.limit if isinstance(strategy, OffsetLimit) else 1
        start, end = bounds.get("start"), bounds.get("end")
        if not isinstance(start, dict) or not (end is None or isinstance(end, dict)):
            raise ConfigError("partition is not a rest partition of pages", field="partition")
        if state is None:
            state = {"stream": name, "position": {"token": start, "skip": 0}, "done": False}
        if state.get("done"):
            return "nothing", None
        position = Position.from_state(state.get("position"))
        at, lo = position.token.get(key), start[key]
        hi = end[key] if end is not None else None
        if not isinstance(at, int) or at < lo or (hi is not None and at > hi):
            raise ConfigError(
                f"state is not a state of partition {partition.index} of {name!r} "
                f"(pages from {key} {lo} to {hi if hi is not None else 'the end'})",
                field="state",
                hint="resume a partition only from a state of its own batches",
            )
        pages = None if hi is None else -(-(hi - at) // stride)
        if pages == 0:
            return "nothing", None
        limits: dict[str, int | None] = {"max_pages": pages, "max_records": None}
        return "pages", _StreamRun(self, name, config, state, size, limits)

    # --- calls that are not streams ------------------------------------------------------------

    @contextlib.contextmanager
    def client(self) -> Iterator[httpx.Client]:
        """
        An ``httpx.Client`` for calls that are not streams, configured as the streams are:
        base URL (``client.get("/me")``), auth (OAuth tokens cached and refreshed),
        configured headers and params, timeouts, User-Agent, the rate-limit budget, the
        breaker and the retry policy; credentials only to base_url's origin, another
        origin refused (`OriginRefused`) unless ``allowed_hosts`` names it, and redirects
        under the same rule. A POST or PATCH is retried only with an idempotency-key
        header or when it cannot have been processed (no connection, 429, 503). An HTTP
        error status is returned as a response (``raise_for_status()``); a failure
        without one raises a headwater error. Closing it leaves the connector open.
        """
        from headwater_rest._client import make_client

        with make_client(self.http) as client:
            yield client

    @contextlib.asynccontextmanager
    async def aclient(self) -> AsyncIterator[httpx.AsyncClient]:
        """Async twin of `client`: an ``httpx.AsyncClient`` with a pool of its own."""
        from headwater_rest._client import make_aclient

        async with make_aclient(self.http) as client:
            yield client

    def _shared_client(self) -> httpx.Client:
        if self._client_obj is None:
            http = self.http  # outside the lock: building it takes the lock too
            with self._http_lock:
                if self._client_obj is None:
                    from headwater_rest._client import make_client

                    self._client_obj = make_client(http)
        return self._client_obj

    def request(
        self, method: str, path: str, *, params: Params = None, json: Any = None, **kwargs: Any
    ) -> httpx.Response:
        """
        One call through `client` (``request("POST", "/refunds", json={...})``): the
        response, read; an error status raises its headwater error (401 `AuthFailed`, 404
        `NotFound`, 429 `RateLimited`, 5xx `ServerError`, ...) after the retries. Other
        keyword arguments (``headers``...) go to ``httpx.Client.request``.
        """
        from headwater_rest._client import checked

        response = self._shared_client().request(method, path, params=params, json=json, **kwargs)
        return checked(self.http, response)

    async def arequest(
        self, method: str, path: str, *, params: Params = None, json: Any = None, **kwargs: Any
    ) -> httpx.Response:
        """Async twin of `request` (a client per call: use `aclient` for many)."""
        from headwater_rest._client import checked

        async with self.aclient() as client:
            response = await client.request(method, path, params=params, json=json, **kwargs)
        return checked(self.http, response)

    def breaker_state(self, url: str | None = None) -> str:
        """
        The circuit breaker of base_url's origin (or ``url``'s): ``"closed"``, ``"open"``
        or ``"half_open"``, for health endpoints. Breakers are per origin and process.
        """
        return self.http.breaker(url or self.config.base_url).state

    def stats(self) -> dict[str, dict[str, int]]:
        """
        The sync HTTP client's connection pool (``sync``; none before first use): ``size``,
        ``in_use``, ``idle``, ``max_size``. httpx counts no waiting requests, connections
        made or closed, or errors, so those are absent, not 0; async clients live as long
        as the operation that made them (one per event loop) and are not listed.
        """
        http = self._http_obj
        client = http.sync_client if http is not None else None
        if client is None:
            return {}
        from headwater_rest._http import pool_stats

        return {"sync": pool_stats(client, self.config.max_connections)}

    # --- write ----------------------------------------------------------------------------------

    def write(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]],
        **options: Any,
    ) -> RestWriteResult:
        """
        Send ``batches``' records as JSON to ``stream``'s ``write`` endpoint, in order: one
        request per record or per ``write.batch_size`` records. Returns a
        `RestWriteResult` (``records`` sent, ``failed``, ``failures``).

        Option ``on_error``: ``"stop"`` (default) raises `WriteFailed` at the first failed
        request, naming its record or request index and status, its ``result`` counting
        what was sent before; ``"continue"`` sends the rest and reports every failure in
        the result.
        """
        from headwater_rest._write import Writer, write_settings

        config = self._stream(stream)
        writer = Writer(stream, config.path, write_settings(stream, config), dict(options))
        with _closing_on_error(batches):
            return writer.run(self.http, batches)

    # --- part writes ----------------------------------------------------------------------------

    def check_part_write(self, stream: str, **options: Any) -> None:
        """
        Refuse, on an engine's driver before any task, a part write that `write_part`
        would refuse on every worker: a stream without write settings (`ConfigError`),
        one whose write is not idempotent (`NotSupported` naming
        ``streams.<name>.write.idempotency_header``), ``on_error="continue"`` or an
        unknown option (`ConfigError`). From the config alone: no request is made.
        """
        from headwater_rest._write import part_settings

        part_settings(stream, self._stream(stream), options)

    def write_part(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]],
        *,
        job: str,
        index: int,
        **options: Any,
    ) -> RestWriteResult:
        """
        Send part ``index`` of write ``job`` to ``stream`` now (`Capability.PART_WRITES`):
        an API has nowhere to stage it, so its pages are stored, and visible, as they are
        accepted. A retried attempt sends the same pages with the same idempotency keys
        (derived from the job, the part index, the page's position in the part and its
        body), which the API answers without storing again: each page is stored once
        provided the retry recomputes the same records in the same order. Only for a
        stream whose write is idempotent: a PUT, or ``write.idempotency_header`` set;
        any other raises `NotSupported` naming the stream and the setting (as
        `check_part_write` does on the driver). A part stops at its first failed request
        (`WriteFailed`; ``on_error="continue"`` is refused), so the engine retries it.
        Returns a `RestWriteResult`: the records sent.
        """
        writer = self._part_writer(stream, job, index, options)
        with _closing_on_error(batches):
            return writer.run(self.http, batches)

    async def awrite_part(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]],
        *,
        job: str,
        index: int,
        **options: Any,
    ) -> RestWriteResult:
        """Async twin of `write_part`, on httpx's async client (the same flow)."""
        writer = self._part_writer(stream, job, index, options)
        with _closing_on_error(batches):
            return await writer.arun(self.http, batches)

    def _part_writer(self, stream: str, job: str, index: int, options: Mapping[str, Any]) -> Writer:
        """The writer of one part, everything checked before a request is made."""
        from headwater_rest._write import Writer, part_settings

        check_part(job, index)
        config = self._stream(stream)
        settings = part_settings(stream, config, options)
        return Writer(stream, config.path, settings, dict(options), part=(job, index))

    def commit_parts(
        self, stream: str, *, job: str, parts: Mapping[int, int], **options: Any
    ) -> WriteResult:
        """
        The end of a part write: the parts' indexes and record counts checked, and their
        sum returned. There is nothing to make visible: every part's pages were stored
        when `write_part` sent them.
        """
        from headwater_rest._write import check_commit, part_settings

        part_settings(stream, self._stream(stream), options)
        return check_commit(stream, job, parts)

    async def acommit_parts(
        self, stream: str, *, job: str, parts: Mapping[int, int], **options: Any
    ) -> WriteResult:
        """Async twin of `commit_parts` (no I/O: the same checks)."""
        return self.commit_parts(stream, job=job, parts=parts, **options)

    def abort_parts(self, stream: str, *, job: str) -> None:
        """
        Give up write ``job``: there is nothing staged to remove, and the pages the API
        already accepted from its parts **cannot be taken back**; they stay stored (a
        warning says so). Running the write again is a new job with new keys, which
        the API does not deduplicate against this one's.
        """
        check_part(job)
        settings = self._stream(stream).write
        if settings is not None and (
            settings.method == "PUT" or settings.idempotency_header is not None
        ):
            logger.warning(
                "write job %s into %r was aborted: the pages its parts sent and the API "
                "accepted stay stored (a REST write cannot be taken back)",
                job,
                stream,
            )

    async def aabort_parts(self, stream: str, *, job: str) -> None:
        """Async twin of `abort_parts` (no I/O)."""
        self.abort_parts(stream, job=job)

    # --- lifecycle ------------------------------------------------------------------------------

    def release(self) -> None:
        with self._http_lock:
            client, self._client_obj = self._client_obj, None
        if client is not None:
            client.close()
        if self._http_obj is not None:
            self._http_obj.close()

    async def arelease(self) -> None:
        # Async clients are closed by the operation that opened them.
        self.release()


@contextlib.contextmanager
def _closing_on_error(batches: object) -> Iterator[None]:
    """Close ``batches`` (a generator) when what consumes them fails."""
    try:
        yield
    except BaseException:
        close = getattr(batches, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
        raise


class _StreamRun:
    """One run over one (non-child) stream: request specs, pages → batches, state."""

    def __init__(
        self,
        connector: RestConnector,
        name: str,
        config: StreamConfig,
        state: State | None,
        batch_size: int | None,
        limits: dict[str, int | None],
        *,
        path_vars: tuple[str, Mapping[str, Any]] | None = None,
        extra_fields: dict[str, Any] | None = None,
    ) -> None:
        self.connector = connector
        self.name = name
        self.config = config
        self.batch_size = batch_size
        self.strategy = connector.strategy(config.pagination)
        self.select = RecordSelector(config.records)
        self.path = _fill_path(config.path, path_vars) if path_vars else config.path
        self.extra_fields = extra_fields or {}
        self.max_pages = limits.get("max_pages") or config.max_pages
        self.max_records = limits.get("max_records") or config.max_records
        self.pages = 0
        self.records = 0
        self.finished = False
        self.position: Position | None = None
        inc = config.incremental
        self.since: Any = inc.initial if inc else None
        self.highest: Any = None
        self._last_state: State | None = None

        # The stream's own credential headers/params, resolved once per run; the registry
        # (plugin discovery) is looked up only when one names a secret.
        def resolvers() -> Mapping[str, CredentialResolver]:
            return connector.registry.credential_resolvers()

        self.headers: dict[str, str] = (
            resolve_values(config.headers, f"streams.{name}.headers", resolvers())
            if has_credentials(config.headers)
            else {k: str(v) for k, v in config.headers.items()}
        )
        self.params: dict[str, Any] = (
            resolve_values(config.params, f"streams.{name}.params", resolvers())
            if has_credentials(config.params)
            else dict(config.params)
        )
        if state:
            self._resume(state)

    def _resume(self, state: State) -> None:
        if not isinstance(state, dict) or state.get("stream") != self.name:
            raise ConfigError(f"state is not a rest state for stream {self.name!r}", field="state")
        inc = self.config.incremental
        if inc is not None:
            self.since = state.get("since", inc.initial)
            self.highest = state.get("max")
        if state.get("done"):
            if inc is None:
                self.finished = True
                return
            # A finished incremental run: the next one asks for what changed since.
            if self.highest is not None:
                self.since = self.highest
            return
        raw = state.get("position")
        if raw is not None:
            self.position = Position.from_state(raw).with_params(
                self.params, added_by_auth=self._auth_params(), stream=self.name
            )

    def _auth_params(self) -> frozenset[str]:
        """Query parameters the auth adds to every request (``api_key`` in the query)."""
        auth = self.connector.config.auth
        if auth.type == "api_key" and getattr(auth, "location", "header") == "query":
            return frozenset({str(getattr(auth, "name", None) or "X-API-Key")})
        return frozenset()

    def _is_secret_param(self, name: str) -> bool:
        """Whether a next URL's parameter is a credential, kept out of states."""
        if name in self.config.params:  # the config's own marking: {secret:} / {plain:}
            return isinstance(self.config.params[name], Secret)
        return is_credential_name(name) or name in self._auth_params()

    # --- requests -------------------------------------------------------------------------------

    def spec(self, request: PageRequest) -> RequestSpec:
        from headwater_rest._http import RequestSpec

        c = self.config
        if request.url is not None:
            return RequestSpec(
                method=c.method, url=request.url, json=c.json_body, headers=self.headers
            )
        params: dict[str, Any] = dict(self.params)
        if c.incremental is not None and self.since is not None:
            params[c.incremental.param] = self.since
        body = c.json_body
        headers = self.headers
        inject = c.pagination.inject
        if inject == "query":
            params.update(request.params)
        elif inject == "header":
            headers = {**headers, **{k: str(v) for k, v in request.params.items()}}
        elif request.params:
            body = with_values(body, request.params)
        return RequestSpec(
            method=c.method,
            path=self.path,
            params=params,
            json=body,
            headers=headers,
        )

    def flow(self) -> PageFlow:
        return page_flow(
            self.strategy,
            self.select,
            self.position,
            max_pages=self.max_pages,
            max_records=self.max_records,
        )

    # --- pages → batches --------------------------------------------------------------------------

    def _state(self, position: Position | None) -> State:
        state: State = {
            "stream": self.name,
            "position": position.to_state(self._is_secret_param) if position is not None else None,
            "done": position is None,
        }
        if self.config.incremental is not None:
            state["since"] = self.since
            state["max"] = self.highest
        return state

    def batches(self, page: Page) -> Iterator[Batch]:
        self.pages += 1
        records = page.records
        inc = self.config.incremental
        if self.extra_fields:
            for record in records:
                record.update(self.extra_fields)
        size = self.batch_size or len(records) or 1
        for begin in range(0, len(records), size):
            chunk = records[begin : begin + size]
            end = begin + len(chunk)
            if inc is not None:
                for record in chunk:
                    self.highest = _later(self.highest, value_at(record, inc.field))
            position = (
                page.after
                if end == len(records)
                else Position(page.start.token, page.start.skip + end)
            )
            self.records += len(chunk)
            state = self._state(position)
            self._last_state = state
            yield Batch(self.name, chunk, state)
        if page.after is None and (self._last_state is None or not self._last_state["done"]):
            # The stream ended on an empty page (or nothing came at all): one empty batch
            # carries the final state, so an incremental run can move its cursor on.
            state = self._state(None)
            self._last_state = state
            yield Batch(self.name, [], state)

    # --- drivers --------------------------------------------------------------------------------

    def sync(self) -> Iterator[Batch]:
        if self.finished:
            return
        from headwater_rest._paginate import drive

        with contextlib.closing(
            drive(self.flow(), *self.connector.http.senders(self.spec))
        ) as pages:
            for page in pages:
                yield from self.batches(page)

    async def asynchronous(self, client: httpx.AsyncClient) -> AsyncIterator[Batch]:
        if self.finished:
            return
        from headwater_rest._paginate import adrive

        pages = adrive(self.flow(), *self.connector.http.asenders(client, self.spec))
        async with contextlib.aclosing(pages):
            async for page in pages:
                for batch in self.batches(page):
                    yield batch


class _ChildWalk:
    """Bookkeeping of a child stream: which parent record we are at, and the limits."""

    def __init__(
        self,
        name: str,
        config: StreamConfig,
        parent: ParentConfig,
        state: State | None,
        limits: dict[str, int | None],
    ) -> None:
        self.name = name
        self.config = config
        self.parent = parent
        self.alias = parent.alias or parent.stream
        self.max_pages = limits.get("max_pages") or config.max_pages
        self.max_records = limits.get("max_records") or config.max_records
        self.pages = 0
        self.records = 0
        self.finished = False
        #: A limit was reached: the walk ends without a final batch.
        self.stopped = False
        self.parent_state: State | None = None
        self.start_index = 0
        self.child_state: State | None = None
        self._first = True
        if state:
            if not isinstance(state, dict) or state.get("stream") != name:
                raise ConfigError(f"state is not a rest state for stream {name!r}", field="state")
            if state.get("done"):
                self.finished = True
                return
            where = state.get("parent") or {}
            self.parent_state = where.get("state")
            self.start_index = int(where.get("index", 0))
            self.child_state = state.get("child")

    def runs(
        self, connector: RestConnector, parent_batch: Batch, size: int | None
    ) -> Iterator[tuple[int, _StreamRun]]:
        """
        The child runs of ``parent_batch``'s records, each with its record's index; the
        caller reads each run before asking for the next. Stops (`stopped`) when a limit
        is reached.
        """
        rows = parent_batch.rows()
        begin = self.start_index if self._first else 0
        for index in range(begin, len(rows)):
            run = self.child_run(connector, index, rows[index], size)
            yield index, run
            if self.exhausted(run):
                self.stopped = True
                return
        self.after_parent_batch(parent_batch)

    def wrapped(self, batches: Iterable[Batch], index: int) -> Iterator[Batch]:
        """The non-empty ``batches`` of the child run of record ``index``, as this stream's."""
        for batch in batches:
            if len(batch):
                yield self.wrap(batch, index)

    def child_run(
        self, connector: RestConnector, index: int, record: dict[str, Any], size: int | None
    ) -> _StreamRun:
        resume = self.child_state if self._first and index == self.start_index else None
        extra = {field: value_at(record, path) for field, path in self.parent.fields.items()}
        limits = {
            "max_pages": None if self.max_pages is None else max(1, self.max_pages - self.pages),
            "max_records": None
            if self.max_records is None
            else max(1, self.max_records - self.records),
        }
        return _StreamRun(
            connector,
            self.name,
            self.config,
            resume,
            size,
            limits,
            path_vars=(self.alias, record),
            extra_fields=extra,
        )

    def wrap(self, batch: Batch, index: int) -> Batch:
        state: State = {
            "stream": self.name,
            "parent": {"state": self.parent_state, "index": index},
            "child": batch.state,
            "done": False,
        }
        return Batch(self.name, batch.records, state)

    def exhausted(self, run: _StreamRun) -> bool:
        self.pages += run.pages
        self.records += run.records
        return (self.max_pages is not None and self.pages >= self.max_pages) or (
            self.max_records is not None and self.records >= self.max_records
        )

    def after_parent_batch(self, parent_batch: Batch) -> None:
        self._first = False
        self.parent_state = parent_batch.state

    def final(self) -> Batch:
        return Batch(self.name, [], {"stream": self.name, "done": True})


_styles_lock = threading.Lock()


def _pagination_styles(registry: Registry) -> dict[str, Any]:
    """Style name → factory from every plugin implementing ``register_pagination_styles``."""
    from headwater_rest import hookspecs

    pm = registry.pm
    with _styles_lock:
        if not hasattr(pm.hook, "register_pagination_styles"):
            pm.add_hookspecs(hookspecs)
    styles: dict[str, Any] = {}
    # One implementation at a time, so a broken plugin costs only its own styles.
    for impl in reversed(pm.hook.register_pagination_styles.get_hookimpls()):
        try:
            result: Any = impl.function()
            provided: dict[str, Any] = dict(result or {})
        except Exception as exc:
            logger.warning(
                "plugin %s: register_pagination_styles raised %s",
                impl.plugin_name,
                type(exc).__name__,
            )
            continue
        for name, factory in provided.items():
            if name in BUILTIN_PAGINATION_TYPES or name in styles:
                logger.warning(
                    "plugin %s: pagination style %r ignored (already provided)",
                    impl.plugin_name,
                    name,
                )
                continue
            styles[name] = factory
    return styles


def with_values(body: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """
    A copy of the JSON ``body`` (an object, or ``None`` for ``{}``) with each dotted name
    of ``values`` set (``variables.after`` sets ``after`` inside ``variables``, creating
    the objects on the way). The stream's own body is never changed.
    """
    import copy

    result: dict[str, Any] = copy.deepcopy(body) if isinstance(body, dict) else {}
    for name, value in values.items():
        *parents, last = name.split(".")
        target = result
        for part in parents:
            child = target.get(part)
            if not isinstance(child, dict):
                child = {}
                target[part] = child
            target = child
        target[last] = value
    return result


def _fill_path(template: str, path_vars: tuple[str, Mapping[str, Any]]) -> str:
    alias, record = path_vars

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        head, _, rest = name.partition(".")
        if head != alias:
            raise ConfigError(
                f"path placeholder {{{name}}} does not start with {alias!r}", field="path"
            )
        value = value_at(record, rest) if rest else None
        if value is None or isinstance(value, dict | list):
            raise ConfigError(f"parent record has no value for {{{name}}}", field="path")
        return quote(str(value), safe="")

    return _PLACEHOLDER.sub(replace, template)


def _runs(items: builtins.list[Any], count: int) -> builtins.list[builtins.list[Any]]:
    """``items`` cut into at most ``count`` runs of consecutive items, as even as can be."""
    n = min(count, len(items))
    return [items[len(items) * i // n : len(items) * (i + 1) // n] for i in range(n)]


def _later(current: Any, value: Any) -> Any:
    if value is None:
        return current
    if current is None:
        return value
    try:
        return value if value > current else current
    except TypeError:
        return value if str(value) > str(current) else current
