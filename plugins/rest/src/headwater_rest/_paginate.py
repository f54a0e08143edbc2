"""
Pagination as sans-I/O generators.

A *page flow* is a generator that says what to fetch and receives what came back; it
never touches the network. It yields

* a `PageRequest` — the driver performs it and sends back a `PageResponse`;
* a `Page` — records for the consumer; the driver sends back ``None``;
* a `Fanout` — several requests whose responses the driver fetches concurrently
  (at most ``concurrency`` in flight) and sends back *one at a time, in order*; the
  flow answers each response with exactly one `Page`. After a `Page` whose ``after``
  is ``None`` (the stream is complete or a limit was reached) the driver stops sending
  responses, cancels what is still in flight and resumes the flow with ``None``, which
  makes it return.

`drive` and `adrive` run a flow with a sync or an async sender. Every strategy (cursor
in the body or in a header, offset/limit, page number, next URL, RFC 8288 ``Link``,
none) only says how to build the request for a *token* (a JSON-able position) and how
to get the next token from a response; loop detection, empty pages, limits, resuming
mid-page and concurrent fetching are written once, in `page_flow`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Mapping,
)
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from headwater import ConfigError
from headwater.toolkit import get_logger
from headwater_rest._config import (
    CursorPagination,
    HeaderCursorPagination,
    LinkHeaderPagination,
    NextUrlPagination,
    NoPagination,
    OffsetPagination,
    PageNumberPagination,
    parse_path,
)
from headwater_rest._errors import PaginationError

logger = get_logger("headwater_rest.pagination")

#: A JSON-able position of one page (``{"cursor": "abc"}``, ``{"offset": 200}``).
Token: TypeAlias = dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class PageRequest:
    """What to fetch: the stream's path (``url`` is ``None``) or an absolute next URL."""

    url: str | None = None
    #: Pagination parameters, added to the stream's own (only when ``url`` is ``None``).
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class PageResponse:
    """What came back: the final URL, the headers (case-insensitive mapping) and the JSON body."""

    url: str
    headers: Mapping[str, str]
    body: Any


def without_params(url: str, is_secret: Callable[[str], bool]) -> tuple[str, list[str]]:
    """``url`` without the query parameters ``is_secret`` names, and their names."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    removed = sorted({name for name, _ in pairs if is_secret(name)})
    if not removed:
        return url, []
    kept = [(name, value) for name, value in pairs if name not in removed]
    return urlunsplit(parts._replace(query=urlencode(kept))), removed


@dataclasses.dataclass(frozen=True, slots=True)
class Position:
    """A record's place in the stream: the page's token and how many records of it to skip."""

    token: Token
    skip: int = 0
    #: Credential parameters taken out of the token's URL when it was saved (`to_state`):
    #: the config must give them back on resume (`with_params`).
    stripped: tuple[str, ...] = ()

    def to_state(self, is_secret: Callable[[str], bool] | None = None) -> dict[str, Any]:
        """
        The JSON-able form kept in a batch state. A next URL loses its credential
        parameters (``is_secret``; an API may put ``access_token=...`` in the links it
        sends): states are files, never a place for a secret. Their names are kept.
        """
        token = self.token
        stripped = set(self.stripped)
        url = token.get("url")
        if is_secret is not None and isinstance(url, str):
            clean, removed = without_params(url, is_secret)
            if removed:
                token = {**token, "url": clean}
                stripped.update(removed)
        state: dict[str, Any] = {"token": token, "skip": self.skip}
        if stripped:
            state["stripped"] = sorted(stripped)
        return state

    @classmethod
    def from_state(cls, data: Any) -> Position:
        """Inverse of `to_state`; raises `ConfigError` on anything else."""
        stripped = data.get("stripped", []) if isinstance(data, dict) else None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("token"), dict)
            or not isinstance(data.get("skip", 0), int)
            or data.get("skip", 0) < 0
            or not isinstance(stripped, list)
            or not all(isinstance(name, str) for name in stripped)
        ):
            raise ConfigError("state position is not a rest-connector position", field="state")
        return cls(dict(data["token"]), int(data.get("skip", 0)), tuple(stripped))

    def with_params(
        self, values: Mapping[str, Any], *, added_by_auth: frozenset[str], stream: str
    ) -> Position:
        """
        This position with its stripped parameters given back from the config: from
        ``values`` (the stream's params), or left to the auth that adds them to every
        request (``added_by_auth``). A parameter neither gives is refused: the resumed
        request would go out without it.
        """
        if not self.stripped:
            return self
        missing = [n for n in self.stripped if n not in values and n not in added_by_auth]
        if missing:
            raise ConfigError(
                f"stream {stream!r}: the saved next URL carried the credential parameter(s) "
                f"{', '.join(missing)}, which a state never keeps, and the config does not "
                "give them",
                field="state",
                hint=f"set streams.{stream}.params.{missing[0]} (a secret reference), or read "
                "the stream from the start without the state",
            )
        url = self.token.get("url")
        restore = {n: values[n] for n in self.stripped if n in values and n not in added_by_auth}
        if not isinstance(url, str) or not restore:
            return dataclasses.replace(self, stripped=())
        parts = urlsplit(url)
        query = [*parse_qsl(parts.query, keep_blank_values=True), *restore.items()]
        token = {**self.token, "url": urlunsplit(parts._replace(query=urlencode(query)))}
        return Position(token, self.skip)


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """Records of one page, where the first of them is, and where the stream goes on after them."""

    records: list[dict[str, Any]]
    start: Position
    #: Where the record after the last one is; ``None`` when the stream is complete.
    after: Position | None
    #: True when the flow stops after this page although the stream goes on:
    #: ``max_pages``/``max_records`` was reached, or an error is raised next.
    limited: bool = False

    @property
    def final(self) -> bool:
        """True when the flow stops after this page."""
        return self.after is None or self.limited


@dataclasses.dataclass(frozen=True, slots=True)
class Fanout:
    """Fetch these requests concurrently (at most ``concurrency`` in flight), answering in order."""

    requests: list[PageRequest]
    concurrency: int


Step: TypeAlias = PageRequest | Page | Fanout
#: A page flow: yields steps, receives responses (or ``None`` after a page).
PageFlow: TypeAlias = Generator[Step, PageResponse | None, None]


# --- reading values out of bodies ------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _steps(path: str) -> tuple[str, ...]:
    try:
        return tuple(parse_path(path, wildcard=True))
    except ValueError as exc:
        # Config paths are checked when the config loads; this is a plugin's path.
        raise ConfigError(str(exc)) from None


def split_path(path: str | None) -> list[str]:
    """
    ``"$.data.items[*]"`` / ``"data.items"`` → ``["data", "items"]`` (``[]`` for the root).
    A path outside the language (`parse_path`) is a `ConfigError`, never "nothing found".
    """
    if not path:
        return []
    return list(_steps(path))


_MISSING = object()
_DICT = frozenset({dict})


def dig(body: Any, parts: list[str]) -> Any:
    """The value at ``parts`` in ``body``, or a private sentinel when a step is missing."""
    value = body
    for part in parts:
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.lstrip("-").isdigit():
            index = int(part)
            value = value[index] if -len(value) <= index < len(value) else _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def value_at(body: Any, path: str | None) -> Any:
    """The value at dotted ``path`` in ``body``, or ``None`` when absent."""
    value = dig(body, split_path(path))
    return None if value is _MISSING else value


class RecordSelector:
    """Pulls the list of records out of a response body."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.parts = split_path(path)

    def __call__(self, body: Any) -> list[dict[str, Any]]:
        found = dig(body, self.parts)
        if found is _MISSING:
            keys = (
                ", ".join(sorted(map(str, body))[:10])
                if isinstance(body, Mapping)
                else type(body).__name__
            )
            raise ConfigError(
                f"records path {self.path!r} is not in the response (it has: {keys})",
                field="records",
            )
        if found is None:
            return []
        if isinstance(found, list):
            # The usual case, a list of objects, is returned as is (the type check runs
            # in C); anything else is wrapped item by item.
            if {*map(type, found)} <= _DICT:
                return found
            return [item if isinstance(item, dict) else {"value": item} for item in found]
        if isinstance(found, dict):
            return [found]
        # A text or a number where the records should be (an error message in place of
        # the list, a path one step short) is no record: wrapping it would deliver a
        # made-up {"value": ...} row and report the read complete.
        raise ConfigError(
            f"records path {self.path!r} holds a {type(found).__name__}, not a list of "
            "records or an object",
            field="records",
            hint="point records at the list of records in the response",
        )


# --- strategies ------------------------------------------------------------------------------


class Strategy:
    """How to turn a token into a request and a response into the next token."""

    #: Pages fetched at once when `plan` can list the remaining pages.
    concurrency = 1
    #: End the stream at an empty page.
    stop_on_empty = True

    def first(self) -> Token:
        """The token of the first page."""
        return {}

    def request(self, token: Token) -> PageRequest:
        """The request for the page at ``token``."""
        return PageRequest()

    def next_token(
        self, token: Token, response: PageResponse, records: list[dict[str, Any]]
    ) -> Token | None:
        """The next page's token, or ``None`` when this was the last page."""
        return None

    def key(self, token: Token) -> str | None:
        """What identifies a page for loop detection (``None``: nothing to compare)."""
        return json.dumps(token, sort_keys=True, default=str)

    def response_key(self, response: PageResponse) -> str | None:
        """A second identity learnt from the response (its URL, for URL-following strategies)."""
        return None

    def says_more(
        self, token: Token, response: PageResponse, records: list[dict[str, Any]]
    ) -> bool:
        """
        Whether the response itself says more pages follow (``has_more``, a total or page
        count beyond this page). An empty page that says so does not end the stream.
        """
        return False

    def plan(
        self, token: Token, response: PageResponse, records: list[dict[str, Any]]
    ) -> list[Token]:
        """Tokens of every remaining page when the response says how many there are; else ``[]``."""
        return []

    def expected(self, token: Token) -> int | None:
        """Records a planned page other than the last must hold (``None``: not known)."""
        return None


class NoPaging(Strategy):
    """A single request."""

    def __init__(self, config: NoPagination) -> None:
        self.stop_on_empty = config.stop_on_empty


class _CursorStrategy(Strategy):
    """Sends the current cursor as a query parameter; subclasses say where the next one is."""

    config: CursorPagination | HeaderCursorPagination

    def __init__(self, config: CursorPagination | HeaderCursorPagination) -> None:
        self.config = config
        self.stop_on_empty = config.stop_on_empty

    def first(self) -> Token:
        return {"cursor": None}

    def request(self, token: Token) -> PageRequest:
        cursor = token.get("cursor")
        return PageRequest(params={} if cursor is None else {self.config.cursor_param: cursor})


class CursorInBody(_CursorStrategy):
    """Next cursor (and optionally ``has_more``) read from the body."""

    config: CursorPagination

    def says_more(
        self, token: Token, response: PageResponse, records: list[dict[str, Any]]
    ) -> bool:
        path = self.config.has_more_path
        return path is not None and _truthy(value_at(response.body, path))

    def next_token(
        self, token: Token, response: PageResponse, records: list[dict[str, Any]]
    ) -> Token | None:
        c = self.config
        cursor = value_at(response.body, c.cursor_path)
        if c.has_more_path is not None:
            if not self.says_more(token, response, records):
                return None
            if cursor in (None, "", [], {}) or isinstance(cursor, bool):
                # Ending here would report a complete read with pages missing.
                raise PaginationError(
                    f"the page at {_describe(token)} says more pages follow "
                    f"({c.has_more_path} is true) but has no cursor at {c.cursor_path}; "
                    "the records before it were delivered, and the saved state resumes at "
                    "this page",
                    field="pagination.cursor_path",
                    hint="check cursor_path against the response (for the last record's id: "
                    "data.-1.id), or report the API's missing cursor to its owner",
                )
        if cursor in (None, ""):
            return None
        if isinstance(cursor, dict | list) and c.inject == "body":
            # A structured position (Elasticsearch's search_after) goes back as JSON.
            return {"cursor": cursor}
        if isinstance(cursor, dict | list | bool):
            raise PaginationError(
                f"the page at {_describe(token)} has a {type(cursor).__name__} at "
                f"{c.cursor_path}, not a cursor",
                field="pagination.cursor_path",
                hint="point cursor_path at the cursor's text or number",
            )
        return {"cursor": str(cursor)}


def _truthy(value: Any) -> bool:
    """A has_more flag: JSON true, or the text "true" some APIs send."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


class CursorInHeader(_CursorStrategy):
    """Next cursor read from a response header."""

    config: HeaderCursorPagination

    def next_token(
        self, token: Token, response: PageResponse, records: list[dict[str, Any]]
    ) -> Token | None:
        cursor = response.headers.get(self.config.header)
        return {"cursor": cursor} if cursor else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


class _Numbered(Strategy):
    """
    Pages at a number counted from ``config.start`` (an offset, a page number): a page
    count or total the response states bounds them, and lets `plan` list the rest.
    """

    config: OffsetPagination | PageNumberPagination
    #: The token's key: ``offset`` or ``page``.
    key_name = ""

    def __init__(self, config: OffsetPagination | PageNumberPagination) -> None:
        self.config = config
        self.stop_on_empty = config.stop_on_empty
        self.concurrency = config.concurrency

    def first(self) -> Token:
        return {self.key_name: self.config.start}

    def total(self, response: PageResponse) -> int | None:
        """The record count a page states (``total_path``), for progress totals."""
        if not self.config.total_path:
            return None
        return _count(value_at(response.body, self.config.total_path))

    def _after(self, token: Token, records: list[dict[str, Any]]) -> int:
        """The number of the page after the page at ``token`` holding ``records``."""
        raise NotImplementedError

    def _end(self, response: PageResponse) -> int | None:
        """The number past the last page, when the response states it."""
        raise NotImplementedError

    #: Numbers between two full pages.
    _stride = 1
    #: Records in a full page (``None``: not known).
    _size: int | None = None
    #: Why an empty page before the stated end is not the end.
    _more_remain = ""

    def says_more(
        self, token: Token, response: PageResponse, records: list[dict[str, Any]]
    ) -> bool:
        end = self._end(response)
        return end is not None and self._after(token, records) < end

    def next_token(
        self, token: Token, response: PageResponse, records: list[dict[str, Any]]
    ) -> Token | None:
        if not records:
            if self.says_more(token, response, records):
                raise _empty_but_more(token, self._more_remain)
            return None
        # A number counted by what came back, not by what was asked: a server that caps
        # the page size below the size asked for must not make us skip records.
        after = self._after(token, records)
        end = self._end(response)
        if end is not None:
            return {self.key_name: after} if after < end else None
        if self._size and len(records) < self._size:
            return None
        return {self.key_name: after}

    def plan(
        self, token: Token, response: PageResponse, records: list[dict[str, Any]]
    ) -> list[Token]:
        end = self._end(response)
        if end is None or (self._size and len(records) != self._size):
            return []
        first = self._after(token, records)
        return [{self.key_name: n} for n in range(first, end, self._stride)]

    def expected(self, token: Token) -> int | None:
        return self._size


class OffsetLimit(_Numbered):
    """``offset``/``limit`` parameters; the total, when the body has one, bounds the stream."""

    config: OffsetPagination
    key_name = "offset"

    def __init__(self, config: OffsetPagination) -> None:
        super().__init__(config)
        self._stride = self._size = config.limit
        self._more_remain = f"{config.total_path} says more remain"

    def request(self, token: Token) -> PageRequest:
        c = self.config
        return PageRequest(params={c.offset_param: token["offset"], c.limit_param: c.limit})

    def _after(self, token: Token, records: list[dict[str, Any]]) -> int:
        return int(token["offset"]) + len(records)

    def _end(self, response: PageResponse) -> int | None:
        return self.total(response)


class PageNumber(_Numbered):
    """``page`` (and ``per_page``) parameters; a page count or total bounds the stream."""

    config: PageNumberPagination
    key_name = "page"
    _more_remain = "the page count or total says more remain"

    def __init__(self, config: PageNumberPagination) -> None:
        super().__init__(config)
        self._size = config.size

    def request(self, token: Token) -> PageRequest:
        c = self.config
        params: dict[str, Any] = {c.page_param: token["page"]}
        if c.size_param and c.size:
            params[c.size_param] = c.size
        return PageRequest(params=params)

    def _after(self, token: Token, records: list[dict[str, Any]]) -> int:
        return int(token["page"]) + 1

    def _end(self, response: PageResponse) -> int | None:
        c = self.config
        if c.total_pages_path:
            pages = _count(value_at(response.body, c.total_pages_path))
            if pages is not None:
                return c.start + pages
        if c.total_path and c.size:
            total = _count(value_at(response.body, c.total_path))
            if total is not None:
                return c.start + math.ceil(total / c.size)
        return None


def _empty_but_more(token: Token, why: str) -> PaginationError:
    return PaginationError(
        f"the page at {_describe(token)} is empty but {why}; the records before it were "
        "delivered, and the saved state resumes at this page",
        hint="the API's total may be out of date; if it is only an estimate, remove "
        "total_path (the stream then ends at the first short page)",
    )


class _FollowUrl(Strategy):
    """Follows the next page's absolute or relative URL; subclasses say where it is."""

    config: NextUrlPagination | LinkHeaderPagination

    def __init__(self, config: NextUrlPagination | LinkHeaderPagination) -> None:
        self.config = config
        self.stop_on_empty = config.stop_on_empty

    def key(self, token: Token) -> str | None:
        url = token.get("url")
        return str(url) if url else None

    def response_key(self, response: PageResponse) -> str | None:
        return response.url

    def first(self) -> Token:
        return {"url": None}

    def request(self, token: Token) -> PageRequest:
        url = token.get("url")
        return PageRequest(url=url) if url else PageRequest()

    def _next(self, response: PageResponse, link: Any) -> Token | None:
        if not isinstance(link, str) or not link.strip():
            return None
        return {"url": urljoin(response.url, link.strip())}


class NextUrlInBody(_FollowUrl):
    """The next page's URL read from the body."""

    config: NextUrlPagination

    def next_token(
        self, token: Token, response: PageResponse, records: list[dict[str, Any]]
    ) -> Token | None:
        return self._next(response, value_at(response.body, self.config.next_url_path))


def parse_link_header(value: str) -> dict[str, str]:
    """RFC 8288 ``Link`` header → relation → URL (the first link wins for each relation)."""
    links: dict[str, str] = {}
    text = value or ""
    pos = 0
    while True:
        begin = text.find("<", pos)
        if begin < 0:
            return links
        close = text.find(">", begin)
        if close < 0:
            return links
        url = text[begin + 1 : close].strip()
        # The parameters run to the next comma outside a quoted string.
        pos = close + 1
        quoted = False
        while pos < len(text) and (quoted or text[pos] != ","):
            if text[pos] == '"':
                quoted = not quoted
            pos += 1
        for param in _split_params(text[close + 1 : pos]):
            key, _, raw = param.partition("=")
            if key.strip().lower() != "rel":
                continue
            for rel in raw.strip().strip('"').split():
                links.setdefault(rel.lower(), url)


def _split_params(text: str) -> list[str]:
    params: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            params.append("".join(current))
            current = []
        else:
            current.append(char)
    params.append("".join(current))
    return [p.strip() for p in params if p.strip()]


class LinkHeader(_FollowUrl):
    """The next page's URL read from the ``Link`` header."""

    config: LinkHeaderPagination

    def next_token(
        self, token: Token, response: PageResponse, records: list[dict[str, Any]]
    ) -> Token | None:
        header = response.headers.get("link")
        if not header:
            return None
        return self._next(response, parse_link_header(header).get(self.config.rel.lower()))


#: Pagination type → strategy class; other plugins' styles are looked up by the connector.
STRATEGIES: dict[str, Callable[[Any], Strategy]] = {
    "none": NoPaging,
    "cursor": CursorInBody,
    "header_cursor": CursorInHeader,
    "offset": OffsetLimit,
    "page": PageNumber,
    "next_url": NextUrlInBody,
    "link": LinkHeader,
}


def make_strategy(config: Any) -> Strategy:
    """The strategy for a pagination config model."""
    return STRATEGIES[config.type](config)


# --- the flow --------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Limits:
    max_pages: int | None
    max_records: int | None
    pages: int = 0
    records: int = 0

    def cut(
        self, page_records: list[dict[str, Any]], start: Position, after: Position | None
    ) -> Page:
        """Apply the limits to one fetched page."""
        self.pages += 1
        limited = False
        if self.max_records is not None:
            room = self.max_records - self.records
            if len(page_records) >= room:
                limited = True
                if len(page_records) > room:
                    page_records = page_records[:room]
                    after = Position(start.token, start.skip + room)
        if self.max_pages is not None and self.pages >= self.max_pages:
            limited = True
        self.records += len(page_records)
        return Page(page_records, start, after, limited=limited and after is not None)


def page_flow(
    strategy: Strategy,
    select: Callable[[Any], list[dict[str, Any]]],
    position: Position | None = None,
    *,
    max_pages: int | None = None,
    max_records: int | None = None,
) -> PageFlow:
    """
    The pages of one stream, from ``position`` (the start when ``None``).

    Never loops forever: a token or URL seen before ends the stream with
    `PaginationError` (records would repeat), a page pointing at itself ends it cleanly,
    and so does an empty page when ``strategy.stop_on_empty``.
    """
    token = position.token if position is not None else strategy.first()
    skip = position.skip if position is not None else 0
    limits = _Limits(max_pages, max_records)
    seen: set[str] = set()
    planned_once = False
    previous: list[dict[str, Any]] | None = None
    while True:
        response = yield strategy.request(token)
        assert response is not None, "the driver must answer a PageRequest with a PageResponse"
        records = select(response.body)
        if skip > len(records):
            # Beyond the page: reading on would deliver nothing from it and exit 0.
            raise ConfigError(
                f"the state's position skips {skip} records of the page at "
                f"{_describe(token)}, which holds {len(records)}: the data is not what the "
                "state was saved from",
                field="state",
                hint="read the stream from the start without the state",
            )
        _refuse_repeat(strategy, token, records, previous)
        previous = records
        nxt, broken = _advance(strategy, token, response, records, seen)
        plan = (
            strategy.plan(token, response, records)
            if nxt is not None and strategy.concurrency > 1 and not planned_once
            else []
        )
        start = Position(token, skip)
        page = limits.cut(records[skip:], start, Position(nxt) if nxt is not None else None)
        skip = 0
        if broken is not None:
            # Deliver this page (its records are new), then stop with the error; the
            # state stays on this page's successor-to-be, so the stream is not "done".
            after = Position(token, start.skip + len(page.records))
            page = dataclasses.replace(page, after=after, limited=True)
            yield page
            raise broken
        yield page
        if page.final:
            return
        assert nxt is not None
        if not plan:
            token = nxt
            continue
        # Known page count: fetch the rest concurrently, in order, within the limits.
        planned_once = True
        if max_pages is not None:
            plan = plan[: max(0, max_pages - limits.pages)]
        expected = [strategy.expected(t) for t in plan]
        response = yield Fanout([strategy.request(t) for t in plan], strategy.concurrency)
        for index, planned in enumerate(plan):
            assert response is not None, "the driver must answer a Fanout with responses"
            records = select(response.body)
            _refuse_repeat(strategy, planned, records, previous)
            previous = records
            last = index == len(plan) - 1
            if not last:
                want = expected[index]
                if want is not None and records and len(records) != want:
                    raise PaginationError(
                        f"page {json.dumps(planned)} returned {len(records)} records where "
                        f"{want} were expected; the server caps the page size",
                        hint="lower the page size (limit/size) or set concurrency: 1",
                    )
                if not records and strategy.stop_on_empty:
                    # An empty page where the plan (a total) promised more: not an end.
                    page = limits.cut(records, Position(planned), Position(planned))
                    yield dataclasses.replace(page, limited=True)
                    raise _empty_but_more(planned, "the total says more remain")
                nxt = plan[index + 1]
            else:
                nxt, broken = _advance(strategy, planned, response, records, seen)
                if broken is not None:
                    page = limits.cut(records, Position(planned), Position(planned, len(records)))
                    yield dataclasses.replace(page, limited=True)
                    raise broken
            page = limits.cut(
                records, Position(planned), Position(nxt) if nxt is not None else None
            )
            if page.final or last:
                yield page
                if page.final:
                    return
                break
            response = yield page
        assert nxt is not None
        token = nxt


def _refuse_repeat(
    strategy: Strategy,
    token: Token,
    records: list[dict[str, Any]],
    previous: list[dict[str, Any]] | None,
) -> None:
    """
    Raise `PaginationError` when a page holds exactly the records of the page before it.

    Loop detection by position cannot see this: an API that ignores the offset, page or
    cursor parameter (a misspelt ``offset_param``, say) answers every new position with
    the first page, and an API that clamps page numbers repeats its last page forever.
    Without a total either would never end. The comparison is a C-level list equality
    that stops at the first differing record, so it costs next to nothing per page.
    """
    if not records or records != previous:
        return
    param = {
        OffsetLimit: "offset_param",
        PageNumber: "page_param",
        CursorInBody: "cursor_param",
        CursorInHeader: "cursor_param",
    }.get(type(strategy))
    raise PaginationError(
        f"the page at {_describe(token)} holds the same {len(records)} records as the page "
        "before it; stopping instead of repeating them",
        hint=(
            f"the API seems to ignore the pagination parameter: check {param}"
            if param
            else "the API repeats its pages; report it to the API owner"
        ),
    )


def _advance(
    strategy: Strategy,
    token: Token,
    response: PageResponse,
    records: list[dict[str, Any]],
    seen: set[str],
) -> tuple[Token | None, PaginationError | None]:
    """
    The next token, with empty-page, self-link and cycle checks.

    A cycle is returned as an error for the flow to raise *after* yielding this page:
    the page's records are new, only the link onwards is bad.
    """
    current = strategy.key(token)
    via = strategy.response_key(response)
    for key in (current, via):
        if key is not None:
            seen.add(key)
    empty_end = not records and strategy.stop_on_empty
    if empty_end and not strategy.says_more(token, response, records):
        return None, None
    try:
        nxt = strategy.next_token(token, response, records)
    except PaginationError as exc:
        # The API says more pages follow but gives no way to them: this page's records
        # are delivered first, then the read fails instead of ending "complete".
        return None, exc
    if nxt is None or empty_end:
        # An empty page ends the stream even when it says more and links on
        # (stop_on_empty): an API that says "more" forever must not read forever.
        return None, None
    key = strategy.key(nxt)
    if key is None:
        return nxt, None
    if key in (current, via):
        logger.info("the page links to itself; treating it as the last page")
        return None, None
    if key in seen:
        return None, PaginationError(
            f"pagination cycle: the API sent a position it had sent before ({_describe(nxt)}); "
            "stopping instead of repeating records",
            hint="the API's cursors or next links loop; report it to the API owner",
        )
    return nxt, None


def _describe(token: Token) -> str:
    url = token.get("url")
    if isinstance(url, str):
        # Only the path: a next URL's query can carry credentials.
        from urllib.parse import urlsplit

        return f"url path {urlsplit(url).path!r}"
    text = json.dumps(token, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


# --- drivers ---------------------------------------------------------------------------------

SendMany: TypeAlias = Callable[[list[PageRequest], int], Iterator[PageResponse]]
ASendMany: TypeAlias = Callable[[list[PageRequest], int], AsyncIterator[PageResponse]]


class _PageSteps:
    """What `drive` and `adrive` share: the flow stepped, a fan-out's responses answered."""

    __slots__ = ("flow", "reply")

    def __init__(self, flow: PageFlow) -> None:
        self.flow = flow
        #: The response to the last `PageRequest` (``None`` after a page).
        self.reply: PageResponse | None = None

    def __iter__(self) -> _PageSteps:
        return self

    def __next__(self) -> Step:
        reply, self.reply = self.reply, None
        return self.flow.send(reply)  # its StopIteration ends the iteration

    def answer(self, response: PageResponse) -> Page:
        """The page the flow makes of one of a fan-out's responses."""
        page = self.flow.send(response)
        assert isinstance(page, Page), "a flow answers each fanned-out response with a Page"
        return page

    def fan_in(self, responses: Iterator[PageResponse]) -> Iterator[Page]:
        """A fan-out's pages, one per response, until a final one; closes ``responses``."""
        try:
            for response in responses:
                page = self.answer(response)
                yield page
                if page.final:
                    return
        finally:
            close = getattr(responses, "close", None)
            if close is not None:
                close()


def drive(
    flow: PageFlow,
    send: Callable[[PageRequest], PageResponse],
    send_many: SendMany,
) -> Generator[Page, None, None]:
    """Run a page flow with a blocking sender; yields its pages."""
    steps = _PageSteps(flow)
    try:
        for step in steps:
            if isinstance(step, PageRequest):
                steps.reply = send(step)
            elif isinstance(step, Page):
                yield step
            else:
                yield from steps.fan_in(send_many(step.requests, step.concurrency))
    finally:
        flow.close()


async def adrive(
    flow: PageFlow,
    send: Callable[[PageRequest], Awaitable[PageResponse]],
    send_many: ASendMany,
) -> AsyncGenerator[Page, None]:
    """Run a page flow with an async sender; yields its pages."""
    steps = _PageSteps(flow)
    try:
        for step in steps:
            if isinstance(step, Page):
                yield step
                continue
            if isinstance(step, PageRequest):
                steps.reply = await send(step)
                continue
            responses = send_many(step.requests, step.concurrency)
            try:
                async for response in responses:
                    yield (page := steps.answer(response))
                    if page.final:
                        break
            finally:
                aclose = getattr(responses, "aclose", None)
                if aclose is not None:
                    await aclose()
    finally:
        flow.close()
