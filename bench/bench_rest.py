"""
REST: headwater-rest against a plain httpx loop, httpx async, aiohttp and dlt's rest_api.

A local API serves pre-rendered JSON pages of 500 records (~95 KB) — 200 pages, or 10
pages of 100 records with ``--quick`` — so the server's cost is small and the same for
every case. It runs in its own process, as people deploy one: uvicorn on uvloop with the
httptools parser, in that process's main thread. (A server in a thread of the measuring
process shares its GIL and CPU with the client and hides what the client costs: there,
aiohttp and httpx's async client looked equal.) No scenario uses a token endpoint.

The cursor and latency scenarios run twice (`bench._harness.cold_and_warm`): *cold*, the
first use in a fresh process, every import (``import headwater``, ``import httpx``, ...)
and one-time set-up on the clock, as a user's script or a short job sees it; *warm*, after
the same case has run once in the process. Each case imports what it uses inside its
function, so the cold figures carry each side's own imports and nothing else. Scenarios:

* sequential cursor pagination: the plain httpx keep-alive loop doing the same requests
  and JSON parsing (baseline; and parsing with orjson, as headwater does), a new httpx
  client per request, headwater ``read``, the same loop on ``httpx.AsyncClient`` (the
  peer ``aread`` is compared with), headwater ``aread``, and dlt ``rest_api``;
* 20 ms of server latency, offset pagination with a total: aiohttp with 8 pages in flight
  (baseline; and parsing with orjson, as headwater does), headwater with concurrency 8
  (sync threads and async), httpx async with 8 pages in flight and the sequential httpx
  loop;
* memory: headwater reading 50 and 200 pages (peak RSS should not grow with pages).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any
from urllib.parse import parse_qs

from bench._harness import Case, Scenario, cold_and_warm, imports

# Nothing a case uses is imported here: a cold case imports it on its clock (the worker
# refuses a cold case whose declared imports are already loaded).
_HTTPX = ("httpx",)
_HEADWATER = ("headwater", "headwater_rest", "headwater_rest._connector", "headwater_rest._http")


def _record(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"record-{i:07d}",
        "email": f"user{i}@example.com",
        "created_at": f"2024-01-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
        "amount": round(i * 1.37, 2),
        "active": i % 3 != 0,
        "tags": ["alpha", "beta"] if i % 2 else ["gamma"],
        "address": {"city": "Springfield", "zip": f"{10000 + i % 89999}"},
    }


def _app(pages: list[bytes], per_page: int) -> Any:
    total = len(pages) * per_page

    import asyncio

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        delay = float(query.get("delay", "0"))
        if delay:
            await asyncio.sleep(delay)
        if scope["path"] == "/cursor":
            index = int(query.get("cursor", "0"))
            nxt = b'"%d"' % (index + 1) if index + 1 < len(pages) else b"null"
            body = b'{"data":' + pages[index] + b',"next_cursor":' + nxt + b"}"
        else:  # /offset
            index = int(query.get("offset", "0")) // per_page
            data = pages[index] if index < len(pages) else b"[]"
            body = b'{"items":' + data + b',"total":%d}' % total
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def setup(quick: bool) -> dict[str, Any]:
    """Start the API in its own process; returns its URL and the sizes."""
    n_pages, per_page = (10, 100) if quick else (200, 500)
    # A separate process: the harness's own memory must stay small (a case's peak RSS
    # can inherit its parent's on Linux), and the server must not share a GIL with it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_rest", str(n_pages), str(per_page)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        proc.kill()
        raise RuntimeError("bench REST server did not start")
    return {
        "url": f"http://127.0.0.1:{line}",
        "server_pid": proc.pid,
        "pages": n_pages,
        "per_page": per_page,
        "latency": 0.0 if quick else 0.02,
    }


def teardown(server_pid: int, **_: Any) -> None:
    """Stop the API."""
    os.kill(server_pid, signal.SIGTERM)
    os.waitpid(server_pid, 0)


def serve(n_pages: int, per_page: int) -> None:
    """
    Run the API on a free port (uvicorn, uvloop, httptools) until SIGTERM; print the port
    once it accepts connections.
    """
    import socket

    import uvicorn

    pages = [
        json.dumps(
            [_record(p * per_page + i) for i in range(per_page)], separators=(",", ":")
        ).encode()
        for p in range(n_pages)
    ]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)  # connections wait in the backlog until the loop accepts them
    config = uvicorn.Config(
        _app(pages, per_page),
        log_level="critical",
        access_log=False,
        lifespan="off",
        loop="uvloop",
        http="httptools",
        ws="none",
    )
    print(sock.getsockname()[1], flush=True)
    # In the main thread: uvicorn's own SIGTERM handler stops it.
    uvicorn.Server(config).run(sockets=[sock])


# --- sequential cursor ---------------------------------------------------------------------


@imports(*_HTTPX)
def httpx_loop(url: str, pages: int, per_page: int, orjson: bool = False, **_: Any) -> int:
    """Plain httpx keep-alive loop over the cursor pages (``orjson``: parsed with orjson)."""
    import httpx

    loads = _orjson_loads() if orjson else None
    count = 0
    cursor: str | None = None
    with httpx.Client(base_url=url) as client:
        while True:
            params = {"cursor": cursor} if cursor else {}
            response = client.get("/cursor", params=params)
            body = loads(response.content) if loads else response.json()
            count += len(body["data"])
            cursor = body["next_cursor"]
            if not cursor:
                return count


def _orjson_loads() -> Any:
    import orjson

    return orjson.loads


@imports(*_HTTPX)
def httpx_async_loop(url: str, pages: int, per_page: int, **_: Any) -> int:
    """Plain httpx.AsyncClient keep-alive loop over the cursor pages (the peer of aread)."""
    import asyncio

    import httpx

    async def run() -> int:
        count = 0
        cursor: str | None = None
        async with httpx.AsyncClient(base_url=url) as client:
            while True:
                params = {"cursor": cursor} if cursor else {}
                body = (await client.get("/cursor", params=params)).json()
                count += len(body["data"])
                cursor = body["next_cursor"]
                if not cursor:
                    return count

    return asyncio.run(run())


@imports(*_HTTPX)
def httpx_new_client(url: str, pages: int, per_page: int, **_: Any) -> int:
    """A new httpx client per request (what not to do)."""
    import httpx

    count = 0
    cursor: str | None = None
    while True:
        with httpx.Client(base_url=url) as client:
            params = {"cursor": cursor} if cursor else {}
            body = client.get("/cursor", params=params).json()
        count += len(body["data"])
        cursor = body["next_cursor"]
        if not cursor:
            return count


def _cursor_config(url: str) -> dict[str, Any]:
    return {
        "base_url": url,
        "streams": {
            "items": {
                "path": "/cursor",
                "records": "data",
                "pagination": {"type": "cursor", "cursor_path": "next_cursor"},
            }
        },
    }


@imports(*_HEADWATER)
def headwater_sync(url: str, pages: int, per_page: int, **_: Any) -> int:
    """headwater-rest ``read`` with cursor pagination."""
    from headwater_rest import RestConnector

    with RestConnector(_cursor_config(url)) as connector:
        return sum(len(batch) for batch in connector.read("items"))


@imports(*_HEADWATER)
def headwater_async(url: str, pages: int, per_page: int, **_: Any) -> int:
    """headwater-rest ``aread`` with cursor pagination."""
    import asyncio

    from headwater_rest import RestConnector

    async def run() -> int:
        async with RestConnector(_cursor_config(url)) as connector:
            return sum([len(batch) async for batch in connector.aread("items")])

    return asyncio.run(run())


@imports("dlt.sources.rest_api")
def dlt_rest_api(url: str, pages: int, per_page: int, **_: Any) -> int:
    """dlt's rest_api source, iterated without a pipeline (extract only)."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {
                "base_url": url + "/",
                "paginator": {
                    "type": "cursor",
                    "cursor_path": "next_cursor",
                    "cursor_param": "cursor",
                },
            },
            "resources": [
                {"name": "items", "endpoint": {"path": "cursor", "data_selector": "data"}}
            ],
        }
    )
    return sum(1 for _ in source.resources["items"])


# --- concurrent offset with latency --------------------------------------------------------


@imports(*_HTTPX)
def httpx_offset_sequential(url: str, pages: int, per_page: int, latency: float, **_: Any) -> int:
    """Sequential httpx loop over offset pages, with server latency."""
    import httpx

    count = 0
    offset = 0
    with httpx.Client(base_url=url) as client:
        while True:
            params = {"offset": offset, "limit": per_page, "delay": latency}
            body = client.get("/offset", params=params).json()
            count += len(body["items"])
            offset += per_page
            if offset >= body["total"]:
                return count


def _offset_config(url: str, per_page: int, latency: float) -> dict[str, Any]:
    return {
        "base_url": url,
        "streams": {
            "items": {
                "path": "/offset",
                "params": {"delay": latency},
                "records": "items",
                "pagination": {
                    "type": "offset",
                    "limit": per_page,
                    "total_path": "total",
                    "concurrency": 8,
                },
            }
        },
    }


@imports(*_HEADWATER)
def headwater_offset_sync(url: str, pages: int, per_page: int, latency: float, **_: Any) -> int:
    """headwater-rest ``read``, offset pages 8 at a time (threads)."""
    from headwater_rest import RestConnector

    with RestConnector(_offset_config(url, per_page, latency)) as connector:
        return sum(len(batch) for batch in connector.read("items"))


@imports(*_HEADWATER)
def headwater_offset_async(url: str, pages: int, per_page: int, latency: float, **_: Any) -> int:
    """headwater-rest ``aread``, offset pages 8 at a time."""
    import asyncio

    from headwater_rest import RestConnector

    async def run() -> int:
        async with RestConnector(_offset_config(url, per_page, latency)) as connector:
            return sum([len(batch) async for batch in connector.aread("items")])

    return asyncio.run(run())


@imports(*_HTTPX)
def httpx_async_gather(url: str, pages: int, per_page: int, latency: float, **_: Any) -> int:
    """httpx.AsyncClient, 8 offset pages in flight, parsed in order."""
    import asyncio

    import httpx

    async def run() -> int:
        limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
        async with httpx.AsyncClient(base_url=url, limits=limits) as client:

            async def page(offset: int) -> dict[str, Any]:
                params = {"offset": offset, "limit": per_page, "delay": latency}
                result: dict[str, Any] = (await client.get("/offset", params=params)).json()
                return result

            first = await page(0)
            count = len(first["items"])
            offsets = list(range(per_page, first["total"], per_page))
            sem = asyncio.Semaphore(8)

            async def bounded(offset: int) -> dict[str, Any]:
                async with sem:
                    return await page(offset)

            for body in await asyncio.gather(*(bounded(o) for o in offsets)):
                count += len(body["items"])
            return count

    return asyncio.run(run())


@imports("aiohttp")
def aiohttp_gather(
    url: str, pages: int, per_page: int, latency: float, orjson: bool = False, **_: Any
) -> int:
    """aiohttp, 8 offset pages in flight, parsed in order (``orjson``: with orjson)."""
    import asyncio

    import aiohttp

    loads = _orjson_loads() if orjson else None

    async def run() -> int:
        connector = aiohttp.TCPConnector(limit=8)
        async with aiohttp.ClientSession(url, connector=connector) as session:

            async def page(offset: int) -> dict[str, Any]:
                params = {"offset": offset, "limit": per_page, "delay": latency}
                async with session.get("/offset", params=params) as response:
                    if loads:
                        result: dict[str, Any] = loads(await response.read())
                    else:
                        result = await response.json()
                    return result

            first = await page(0)
            count = len(first["items"])
            offsets = list(range(per_page, first["total"], per_page))
            sem = asyncio.Semaphore(8)

            async def bounded(offset: int) -> dict[str, Any]:
                async with sem:
                    return await page(offset)

            for body in await asyncio.gather(*(bounded(o) for o in offsets)):
                count += len(body["items"])
            return count

    return asyncio.run(run())


# --- memory --------------------------------------------------------------------------------


@imports(*_HEADWATER)
def headwater_pages(url: str, pages: int, per_page: int, limit_pages: int, **_: Any) -> int:
    """headwater-rest ``read`` of the first ``limit_pages`` cursor pages."""
    from headwater_rest import RestConnector

    with RestConnector(_cursor_config(url)) as connector:
        return sum(len(batch) for batch in connector.read("items", max_pages=limit_pages))


def scenarios(quick: bool) -> list[Scenario]:
    """The REST benchmark scenarios."""
    here = "bench.bench_rest"
    setup, teardown = f"{here}:setup", f"{here}:teardown"
    repeat = 1 if quick else 5
    small, large = (5, 10) if quick else (50, 200)
    return [
        *cold_and_warm(
            Scenario(
                "rest: sequential cursor pagination",
                [
                    Case("httpx keep-alive loop", f"{here}:httpx_loop"),
                    Case("httpx keep-alive loop, orjson", f"{here}:httpx_loop", {"orjson": True}),
                    Case("httpx new client per request", f"{here}:httpx_new_client"),
                    Case("headwater-rest read", f"{here}:headwater_sync"),
                    Case("httpx async keep-alive loop", f"{here}:httpx_async_loop"),
                    Case(
                        "headwater-rest aread",
                        f"{here}:headwater_async",
                        versus="httpx async keep-alive loop",
                    ),
                    Case("dlt rest_api", f"{here}:dlt_rest_api"),
                ],
                baseline="httpx keep-alive loop",
                goal=1.0,
                repeat=repeat,
                setup=setup,
                teardown=teardown,
            ),
            cold_goal=0.95,
        ),
        *cold_and_warm(
            Scenario(
                "rest: 20 ms latency, offset with total, 8 concurrent",
                [
                    Case("aiohttp gather 8", f"{here}:aiohttp_gather"),
                    Case("aiohttp gather 8, orjson", f"{here}:aiohttp_gather", {"orjson": True}),
                    Case("headwater-rest aread (8 tasks)", f"{here}:headwater_offset_async"),
                    Case("headwater-rest read (8 threads)", f"{here}:headwater_offset_sync"),
                    Case("httpx async gather 8", f"{here}:httpx_async_gather"),
                    Case("httpx sequential", f"{here}:httpx_offset_sequential"),
                ],
                baseline="aiohttp gather 8",
                goal=1.0,
                repeat=repeat,
                setup=setup,
                teardown=teardown,
            ),
            cold_goal=0.9,
        ),
        Scenario(
            "rest: peak RSS against pages read",
            [
                Case(
                    f"headwater-rest {small} pages",
                    f"{here}:headwater_pages",
                    {"limit_pages": small},
                ),
                Case(
                    f"headwater-rest {large} pages",
                    f"{here}:headwater_pages",
                    {"limit_pages": large},
                ),
            ],
            baseline=f"headwater-rest {small} pages",
            setup=setup,
            teardown=teardown,
        ),
    ]


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
