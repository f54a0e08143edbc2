"""
Transfer bookkeeping shared by the sync and async connector (no network I/O here).

Downloads
    The SDK writes into a `DownloadSink`: a seekable, write-only stream over the
    temporary file. It records which byte ranges have arrived (parallel chunks arrive in
    any order), so an interrupted download resumes with exactly the missing ranges, and
    it computes the MD5 of the file in order as the contiguous prefix grows — inline
    while chunks arrive in order, reading back from the file when a gap closes — so the
    checksum costs no second pass over the file. On Linux, `DirectWriter` writes the
    chunks with ``O_DIRECT``, from one aligned buffer straight to the disk: no page-cache
    copy, no dirty pages for the fsync before the rename to wait for, and a download of
    many gigabytes does not push everything else out of the page cache. Where direct I/O
    is unavailable, `Writeback` has the kernel write the file back while the download
    runs, so the fsync before the rename waits only for the last few megabytes.

Uploads
    `BlockPlan` names the blocks of one upload (unique per upload, so two writers of the
    same blob never mix blocks) and hashes the content as it is cut into blocks; the
    MD5 is set as the blob's Content-MD5 when the block list is committed.
"""

from __future__ import annotations

import base64
import bisect
import errno
import hashlib
import mmap
import os
import queue
import threading
import uuid
from typing import IO, Final

from headwater import IntegrityError

_READBACK: Final = 1 << 20
#: Chunks queued for the background writer: bounds the memory a slow disk can pin. Two
#: are enough to keep it busy (a 1 GiB fetch ran as fast as with four, with 8-13 MB less
#: peak RSS): the download threads each hold a chunk of their own as well.
_QUEUE_DEPTH: Final = 2
#: Bytes written between two write-back rounds (see `Writeback`).
_WRITEBACK_EVERY: Final = 32 << 20
#: ``O_DIRECT`` wants file offsets, lengths and buffer addresses aligned to the device's
#: logical block size; 4 KiB covers devices with 512-byte and 4 KiB blocks.
_DIRECT_ALIGN: Final = 4096


class RangeSet:
    """Disjoint, sorted, merged half-open byte ranges ``[start, end)``."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def add(self, start: int, end: int) -> None:
        """Mark ``[start, end)`` as present."""
        if end <= start:
            return
        # Find every stored range touching [start, end] and merge them into one.
        lo = bisect.bisect_left(self._ends, start)
        hi = bisect.bisect_right(self._starts, end)
        if lo < hi:
            start = min(start, self._starts[lo])
            end = max(end, self._ends[hi - 1])
        self._starts[lo:hi] = [start]
        self._ends[lo:hi] = [end]

    def end_of_run(self, position: int) -> int:
        """The end of the range containing ``position`` (``position`` itself if none does)."""
        index = bisect.bisect_right(self._starts, position) - 1
        if index >= 0 and self._ends[index] > position:
            return self._ends[index]
        return position

    def missing(self, size: int) -> list[tuple[int, int]]:
        """The ranges of ``[0, size)`` not yet present."""
        gaps: list[tuple[int, int]] = []
        position = 0
        for start, end in zip(self._starts, self._ends, strict=True):
            if start > position:
                gaps.append((position, min(start, size)))
            position = max(position, end)
        if position < size:
            gaps.append((position, size))
        return [(s, e) for s, e in gaps if e > s]

    def total(self) -> int:
        """Bytes present."""
        return sum(e - s for s, e in zip(self._starts, self._ends, strict=True))


class Writeback:
    """
    Writes a growing file back to disk in the background, one ``fdatasync`` per
    `_WRITEBACK_EVERY` bytes, on a thread of its own.

    Without it the dirty pages of a whole download wait in the page cache until the
    fsync that must precede the rename, and that fsync then stalls the end of every
    download for as long as the disk takes to write the file (about 0.15 s per 256 MiB
    here). A failed write-back is kept and raised by `check`: on Linux a failed
    ``fdatasync`` clears the file's error state, so the final fsync alone could report
    success for lost data.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._dirty = 0
        self._wake = threading.Event()
        self._requested = False
        self._stopping = False
        self._error: OSError | None = None
        self._sync = getattr(os, "fdatasync", os.fsync)  # no fdatasync on macOS
        self._thread = threading.Thread(
            target=self._run, name="headwater-download-writeback", daemon=True
        )
        self._thread.start()

    def wrote(self, length: int) -> None:
        """Count ``length`` newly written bytes; start a round once enough are dirty."""
        self._dirty += length
        if self._dirty >= _WRITEBACK_EVERY:
            self._dirty = 0
            self._requested = True
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            # A round asked for runs even when close() came in meanwhile: its error, if
            # any, must reach check(), and the final fsync would do the same work anyway.
            if self._requested:
                self._requested = False
                try:
                    self._sync(self._fd)
                except OSError as exc:
                    self._error = exc
                    return
            if self._stopping:
                return

    def check(self) -> None:
        """Raise the error of a failed write-back round, if any."""
        if self._error is not None:
            raise IntegrityError(
                f"writing the download to disk failed: {self._error.strerror or self._error}",
                hint="check the destination's disk (space, health) and fetch again",
            )

    def close(self) -> None:
        """Stop the thread once the rounds asked for have run (idempotent)."""
        self._stopping = True
        self._wake.set()
        self._thread.join()


class DirectWriter:
    """
    Positional ``O_DIRECT`` writes of the aligned pieces of a file (Linux).

    A buffered write copies each chunk into the page cache and leaves it dirty, and the
    fsync before the rename then has the kernel write it all out: CPU for the copy and
    the write-back, measured at about a third of a core-second per 256 MiB on the project's
    machine, and a multi-gigabyte download evicts everything else cached. Direct writes
    go from one reused, page-aligned buffer to the disk; the chunk is copied once into it
    because ``bytes`` from the SDK are not aligned.

    `write` takes what it can and returns how many bytes it wrote, 0 for a piece that is
    not aligned (the last chunk of a blob, or chunk sizes that are not a multiple of
    4 KiB): the caller writes the rest through its buffered descriptor. Aligned and
    unaligned writes never share a block, so the kernel keeps the two coherent. A file
    system that refuses direct I/O (``EINVAL`` on open or on the first write: tmpfs on
    older kernels, some FUSE mounts) turns it off for the rest of the file. Not
    thread-safe: the one buffer is reused, so writes must come one at a time.
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = None
        self._buffer: mmap.mmap | None = None
        flag = getattr(os, "O_DIRECT", 0)
        if not flag:
            return
        try:
            # A second open file description of the same file, opened by its /proc link:
            # O_DIRECT is a property of the description, and the caller's stays buffered.
            self._fd = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | flag | os.O_CLOEXEC)
        except OSError:
            self._fd = None

    @property
    def active(self) -> bool:
        """Whether direct writes are still being made."""
        return self._fd is not None

    def write(self, start: int, view: memoryview) -> int:
        """Write the aligned ``view`` at ``start``; return the bytes written (0: not taken)."""
        length = len(view)
        if self._fd is None or start % _DIRECT_ALIGN or length % _DIRECT_ALIGN or not length:
            return 0
        buffer = self._aligned(length)
        buffer[:length] = view
        try:
            with memoryview(buffer) as whole, whole[:length] as source:
                return os.pwrite(self._fd, source, start)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
        self.close()  # this file system does not take direct I/O: buffered from here on
        return 0

    def read(self, start: int, length: int) -> bytes | None:
        """
        Read back ``length`` bytes at an aligned ``start`` without filling the page cache;
        ``None`` when the caller should read them itself.
        """
        if self._fd is None or start % _DIRECT_ALIGN:
            return None
        padded = -(-length // _DIRECT_ALIGN) * _DIRECT_ALIGN  # O_DIRECT reads whole blocks
        buffer = self._aligned(padded)
        with memoryview(buffer) as whole, whole[:padded] as target:
            try:
                got = os.preadv(self._fd, [target], start)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                return None
            return bytes(target[: min(got, length)])

    def _aligned(self, length: int) -> mmap.mmap:
        # An anonymous mapping is page-aligned; it grows to the largest chunk seen.
        if self._buffer is None or len(self._buffer) < length:
            if self._buffer is not None:
                self._buffer.close()
            self._buffer = mmap.mmap(-1, length)
        return self._buffer

    def close(self) -> None:
        """Close the direct descriptor and free the buffer (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None


class Positioned:
    """
    The seekable surface of a file-like object over ``size`` bytes (a download's target,
    a blob read by ranges): a position that `seek` moves, never below 0.
    """

    size: int
    _position: int

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position


class DownloadSink(Positioned):
    """
    The stream the SDK downloads into: positional writes to ``handle``'s descriptor.

    Writes are positional (the SDK seeks and writes from several threads, one at a time
    under the sink's lock): aligned chunks through a `DirectWriter`, the rest straight to
    the descriptor with ``os.pwrite``, so the buffered ``handle`` from `atomic_file` never
    holds data of its own; `atomic_file` still fsyncs and renames it.

    With ``background=True`` the writes (and the hashing) happen on a writer thread fed
    through a small bounded queue, so the thread or event loop receiving the next chunk
    does not wait for the disk and the MD5, and, for buffered writes, a `Writeback`
    thread keeps the file written back as it grows; `drain` waits until everything
    queued is written. Call `close` when done (it stops the threads), before the file is
    closed. A write after `close` is dropped, never queued or written: the async SDK leaves
    the ranges still running when one range fails (or the fetch is cancelled), and a fetch
    that has ended must not have them write to its descriptor or block the event loop on
    the queue that no thread reads any more. Dropped quietly, so they end without an
    error of their own for asyncio to log long after the fetch reported its own.
    """

    def __init__(
        self, handle: IO[bytes], size: int, *, checksum: bool, background: bool = False
    ) -> None:
        self._fd = handle.fileno()
        self.size = size
        self.received = RangeSet()
        self._position = 0
        self._lock = threading.Lock()
        self._md5 = hashlib.md5(usedforsecurity=False) if checksum else None
        self._hashed = 0
        self._error: BaseException | None = None
        self._queue: queue.Queue[tuple[int, bytes] | None] | None = None
        self._thread: threading.Thread | None = None
        self._direct = DirectWriter(self._fd)
        # Started with the first buffered bytes of a file large enough to need it.
        self._writeback: Writeback | None = None
        self._background = background
        self._closed = False
        if background:
            self._queue = queue.Queue(maxsize=_QUEUE_DEPTH)
            self._thread = threading.Thread(
                target=self._writer, name="headwater-download-writer", daemon=True
            )
            self._thread.start()

    # --- the file-like surface the SDK uses ----------------------------------------------

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        length = len(memoryview(data).cast("B"))
        with self._lock:
            if self._closed:
                return length  # a range of a fetch that has ended: nobody wants it
            start = self._position
            end = start + length
            if end > self.size:
                raise IntegrityError(
                    f"the service sent more bytes than the blob's size ({end} > {self.size})"
                )
            self._position = end
            if self._queue is None:
                self._write_at(start, data)
                return length
            if self._error is not None:
                raise self._error
            # Queued under the lock, so nothing is queued after close()'s end marker.
            # bytes are immutable: queue them as they are; copy anything the caller may reuse.
            self._queue.put((start, data if isinstance(data, bytes) else bytes(data)))
        return length

    def flush(self) -> None:
        """Nothing is buffered here (`drain` waits for the background writer)."""

    def _write_at(self, start: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        direct = written = self._direct.write(start, view)
        while written < len(view):
            written += os.pwrite(self._fd, view[written:], start + written)
        self.received.add(start, start + len(view))
        if written > direct:
            self._wrote_buffered(written - direct)
        if self._md5 is not None:
            self._advance_hash(start, view)

    def _wrote_buffered(self, length: int) -> None:
        # Direct writes leave nothing dirty; buffered ones are written back as they grow.
        if self._writeback is None:
            if not self._background or self.size <= _WRITEBACK_EVERY:
                return  # a smaller file has nothing to write back early
            self._writeback = Writeback(self._fd)
        self._writeback.wrote(length)

    def _writer(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    self._write_at(*item)
            except BaseException as exc:  # reported by drain()/write(), never lost
                self._error = exc
            finally:
                self._queue.task_done()

    def drain(self) -> None:
        """Wait until every queued write is on disk; re-raise a writer failure."""
        if self._queue is not None:
            self._queue.join()
        if self._error is not None:
            raise self._error
        if self._writeback is not None:
            self._writeback.check()

    def close(self) -> None:
        """Stop the background writer and write-back (idempotent); drop writes from now on."""
        with self._lock:
            self._closed = True
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._writeback is not None:
            self._writeback.close()
            self._writeback = None
        self._direct.close()

    # --- bookkeeping ----------------------------------------------------------------------

    def missing(self) -> list[tuple[int, int]]:
        """Byte ranges still to download (call `drain` first)."""
        return self.received.missing(self.size)

    def _advance_hash(self, start: int, view: memoryview) -> None:
        assert self._md5 is not None
        if start == self._hashed:
            self._md5.update(view)
            self._hashed += len(view)
        # A gap closed (out-of-order parallel chunks): hash what follows from the file.
        run_end = self.received.end_of_run(self._hashed)
        while self._hashed < run_end:
            length = min(_READBACK, run_end - self._hashed)
            data = self._direct.read(self._hashed, length)
            if data is None:
                data = os.pread(self._fd, length, self._hashed)
            if not data:
                raise IntegrityError("the temporary file is shorter than the bytes written")
            self._md5.update(data)
            self._hashed += len(data)

    def finish(self) -> bytes | None:
        """
        Check every byte arrived; return the MD5 digest (``None`` without checksum).

        Raises:
            IntegrityError: bytes are missing.
        """
        self.drain()
        if self._writeback is not None:
            # Wait for the rounds asked for: their errors must be seen before the rename.
            self._writeback.close()
            self._writeback.check()
        received = self.received.total()
        if received != self.size or self.missing():
            raise IntegrityError(
                f"download incomplete: {received} of {self.size} bytes received",
            )
        if self._md5 is None:
            return None
        if self._hashed != self.size:
            raise IntegrityError("checksum bookkeeping incomplete")
        return self._md5.digest()


def check_md5(expected: bytes | None, actual: bytes | None, name: str) -> bool:
    """
    Compare the blob's Content-MD5 with what was received.

    Returns:
        True when there was a Content-MD5 to verify (and it matched).

    Raises:
        IntegrityError: it does not match.
    """
    if expected is None or actual is None:
        return False
    if expected != actual:
        raise IntegrityError(
            f"{name!r}: Content-MD5 mismatch (blob says {base64.b64encode(expected).decode()}, "
            f"received bytes hash to {base64.b64encode(actual).decode()}); nothing was written",
            hint="the stored blob or its Content-MD5 property is corrupt; re-upload it",
        )
    return True


class BlockPlan:
    """Block ids and the running MD5 of one block upload."""

    def __init__(self, *, checksum: bool = True) -> None:
        self._upload = uuid.uuid4().hex
        self.ids: list[str] = []
        self.size = 0
        self._md5 = hashlib.md5(usedforsecurity=False) if checksum else None

    def next_block(self, data: bytes) -> str:
        """Account for the next block (in order) and return its id."""
        if self._md5 is not None:
            self._md5.update(data)
        self.size += len(data)
        # Ids must all have one length; the upload id keeps concurrent writers apart.
        # The SDK base64-encodes them on the wire.
        block_id = f"{self._upload}-{len(self.ids):06d}"
        self.ids.append(block_id)
        return block_id

    def md5(self) -> bytes | None:
        """The MD5 digest of everything planned so far (``None`` without checksum)."""
        return self._md5.digest() if self._md5 is not None else None


class Rechunker:
    """Cuts a stream of arbitrary byte pieces into blocks of exactly ``size`` (the last shorter)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._buffer = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        """Add data; return the blocks that are now complete."""
        if not self._buffer and len(data) == self.size:
            return [data]  # a file read block by block: no copy
        self._buffer += data
        if len(self._buffer) < self.size:
            return []
        blocks = []
        view = memoryview(self._buffer)
        offset = 0
        while len(self._buffer) - offset >= self.size:
            blocks.append(bytes(view[offset : offset + self.size]))
            offset += self.size
        view.release()
        del self._buffer[:offset]
        return blocks

    def rest(self) -> bytes:
        """What is left (less than a block)."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data
