"""
`PipeSource`: the records of a readable binary stream (stdin, a pipe, an open file) as a
source for `headwater.copy`, as `headwater._sinks.StreamSink` is the destination side.

A stream is read once, front to back: a batch's state counts the rows so far, but a
read cannot start from it, so a copy from a stream cannot be resumable.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from headwater._connector import Batch, Capability, Connector, ConnectorConfig, State
from headwater.errors import ConfigError
from headwater.formats import decode_batches, make_decoder

#: Bytes read from the stream at a time.
_CHUNK = 1 << 16
#: Records per batch when ``read`` is not given a batch size.
DEFAULT_BATCH_SIZE = 10_000


class PipeConfig(ConnectorConfig):
    """Nothing to configure: the stream is given to the constructor."""


class PipeSource(Connector[PipeConfig]):
    """
    One stream, named after the file object (``<stdin>``), of JSON Lines (the default)
    or CSV records: ``read(name, file_format="csv")``. CSV values are text
    (``Batch.text``), as from a CSV file.
    """

    id = "pipe"
    Config = PipeConfig
    summary = "The records of a readable binary stream"
    capabilities = frozenset({Capability.READ})

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__({})
        self._stream = stream
        self.name = str(getattr(stream, "name", "<stream>"))

    def read(
        self,
        stream: str,
        state: State | None = None,
        *,
        batch_size: int | None = None,
        **options: Any,
    ) -> Iterator[Batch]:
        unknown = set(options) - {"file_format"}
        if unknown:
            raise ConfigError(
                f"{self.name}: unknown read option(s): {', '.join(sorted(unknown))} "
                "(known: file_format)"
            )
        if state:
            raise ConfigError(f"{self.name} cannot be read again from a state", field="state")
        fmt = options.get("file_format") or "jsonl"
        check_pipe_format(self.name, fmt)
        decoder = make_decoder(fmt, self.name)
        chunks = iter(lambda: self._stream.read(_CHUNK), b"")
        size = batch_size or DEFAULT_BATCH_SIZE
        text = fmt == "csv"
        rows = 0
        for batch, _end in decode_batches(decoder, chunks, size):
            rows += len(batch)
            yield Batch(stream, batch, {"stream": stream, "rows": rows}, text)


def check_pipe_format(name: str, fmt: str) -> None:
    """A stream is decoded as it comes: only the line formats can be."""
    if fmt not in ("jsonl", "csv"):
        raise ConfigError(f"{name.strip('<>')} takes JSON Lines or CSV, not {fmt}", field="format")
