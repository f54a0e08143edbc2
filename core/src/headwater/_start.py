"""
The ``headwater`` console script, and the connector listing without click.

``headwater connectors`` (and ``--json``) is what a user runs to see what is installed,
and its time is mostly start-up: importing click and the command line would cost about
as much again as discovering the plugins. `main` answers exactly that command line here
(the same output through the same code as the click command, `list_connectors`) and
hands every other one to `headwater._cli`. An error of the listing is handed over too,
so click and ``_cli.main`` end the run as they end it for the click command.

`echo` writes as ``click.echo`` does where that is plain (a text stream whose encoding
is not ASCII, no ANSI escape in the text, not Windows); anywhere else it is
``click.echo``.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from headwater._plugins import Registry

#: The command lines answered here: ``headwater connectors [--json]``.
_FAST = (["connectors"], ["connectors", "--json"])


def configure_logging(debug: bool) -> None:
    """Log records to stderr, redacted, at WARNING (DEBUG with ``--debug``)."""
    from headwater._redact import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)


def _plain_stream(stream: Any) -> bool:
    """Whether click.echo writes ``stream`` as it is (its encoding is not ASCII)."""
    import codecs

    encoding = getattr(stream, "encoding", None)
    if sys.platform == "win32" or not isinstance(stream, io.TextIOWrapper):
        return False
    if not encoding or getattr(stream, "errors", None) is None:
        return False
    try:
        return codecs.lookup(encoding).name != "ascii"
    except LookupError:
        return True  # click's is_ascii_encoding says "not ASCII" too


def echo(message: str, err: bool = False) -> None:
    """``click.echo(message, err=err)``, without importing click where that is plain."""
    stream = sys.stderr if err else sys.stdout
    if stream is None:
        return  # click.echo writes nowhere either
    if "\x1b" in message or not _plain_stream(stream):
        import click

        click.echo(message, err=err)
        return
    stream.write(message + "\n")
    stream.flush()


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell, one line each, redacted."""
    from headwater._redact import redact

    widths = [max([len(h), *(len(str(r[i])) for r in rows)]) for i, h in enumerate(header)]
    for line in [header, *rows]:
        echo(
            redact(
                "  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            )
        )


def echo_json(data: Any) -> None:
    """``data`` as indented JSON, redacted."""
    import json

    from headwater._redact import redact

    echo(redact(json.dumps(data, indent=2, default=json_fallback, ensure_ascii=False)))


def json_fallback(value: Any) -> Any:
    """JSON for what `json` cannot write: `headwater.formats.json_default`, else ``str``."""
    from headwater.formats import json_default

    try:
        return json_default(value)
    except TypeError:
        return str(value)


def list_connectors(registry: Registry, as_json: bool) -> None:
    """What ``headwater connectors [--json]`` prints: id, summary, origin, status."""
    data = []
    for cid, entries in registry.connectors().items():
        status = "ok" if len(entries) == 1 else "conflict"
        data.append(
            {
                "id": cid,
                "summary": entries[0].summary,
                "origin": " and ".join(e.origin for e in entries),
                "status": status,
            }
        )
    if as_json:
        echo_json(data)
        return
    table(
        ("id", "summary", "origin", "status"),
        [(d["id"], d["summary"], d["origin"], d["status"]) for d in data],
    )


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: ``headwater connectors [--json]`` here, the rest in _cli."""
    args = sys.argv[1:] if argv is None else list(argv)
    # HEADWATER_SOURCES_FILE is an option of the group click checks (a directory is a
    # usage error), so a run that sets it goes through click.
    if args not in _FAST or os.environ.get("HEADWATER_SOURCES_FILE"):
        from headwater._cli import main as cli_main

        cli_main(argv)
        return
    try:
        configure_logging(debug=False)
        from headwater._plugins import get_registry

        list_connectors(get_registry(), as_json=args[1:] == ["--json"])
    except BaseException as exc:
        _hand_over(args, exc)
    sys.exit(0)


def _hand_over(args: list[str], exc: BaseException) -> NoReturn:
    """End as ``_cli.main(args)`` ends when the listing raises ``exc``."""
    from headwater._cli import replay

    replay(args, exc)
