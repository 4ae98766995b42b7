"""Pooled memory of handshake reassembly (RFC 9147 §5.5): a message's bytes while its
fragments arrive (`FragmentStore`) and the whole message handed out (`ReassembledMessage`).

Chunks of `REASSEMBLY_CHUNK` bytes are taken only for the byte ranges that actually
arrived, so memory follows the bytes received, never the length a peer merely claims.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

from .._fast import FragmentCoverage, Lease, MemoryBudgetExceeded, Owner
from ..memory import PoolSet
from .messages import transcript_header

# Storage for a message in reassembly comes in pooled chunks of this size (a pool size
# class): a fragment pins at most its own length plus two chunks, whatever length it claims.
REASSEMBLY_CHUNK = 256


class ReassembledMessage:
    """A complete handshake message handed out by `Reassembler.next_message()`.

    Unpacks as ``msg_type, message_seq, body``. `body` stays valid until
    `release()`, the reassembler's next `next_message()` call or its
    `close()`, whichever comes first; copy what must outlive that.
    """

    __slots__ = ("_lease", "body", "message_seq", "msg_type")

    def __init__(
        self, msg_type: int, message_seq: int, body: memoryview, lease: Lease | None
    ) -> None:
        self.msg_type = msg_type
        self.message_seq = message_seq
        self.body = body
        self._lease = lease

    def __iter__(self) -> Iterator[int | memoryview]:
        return iter((self.msg_type, self.message_seq, self.body))

    @property
    def in_place(self) -> bool:
        """True when the body is a view of the caller's fragment (no copy made)."""
        return self._lease is None

    @property
    def transcript_header(self) -> bytes:
        """The 4-byte TLS-style header that precedes the body in the transcript."""
        return transcript_header(self.msg_type, len(self.body))

    def release(self) -> None:
        """Give the body's memory back (idempotent).

        Views still exported from `body` (a `Buffer` reading it, slices) keep
        the slot out of its pool until they are gone; nothing is overwritten.
        """
        _release_view(self.body)
        if self._lease is not None:
            lease, self._lease = self._lease, None
            lease.release()

    def __enter__(self) -> ReassembledMessage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return (
            f"<ReassembledMessage type={self.msg_type} seq={self.message_seq} "
            f"{'in place' if self.in_place else 'pooled'}>"
        )


def _release_view(view: memoryview) -> None:
    # Still exported (e.g. a Buffer reading it): the slot is freed when that goes. Not
    # contextlib.suppress: three Python calls more per message.
    try:  # noqa: SIM105
        view.release()
    except BufferError:
        pass


class FragmentStore:
    """The bytes of one message as its fragments arrive, in pooled chunks.

    A chunk of `REASSEMBLY_CHUNK` bytes is taken (charged to `owner`) only when a
    fragment reaches into it, so what is held grows with the bytes received. Bytes
    are compared and written once per chunk by `_fast.FragmentCoverage`.
    """

    __slots__ = ("_chunks", "_owner", "_pools", "coverage", "length")

    def __init__(self, pools: PoolSet, owner: Owner | None, length: int, max_ranges: int = -1):
        self._pools = pools
        self._owner = owner
        self.length = length
        self.coverage = FragmentCoverage(length, max_ranges)
        self._chunks: list[Lease | None] = [None] * -(-length // REASSEMBLY_CHUNK)

    @property
    def complete(self) -> bool:
        return bool(self.coverage.complete)

    def write_untrusted(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Merge one fragment (inside the message); returns the newly covered bytes,
        FRAGMENT_MISMATCH or FRAGMENT_TOO_SCATTERED. Raises MemoryBudgetExceeded when a
        chunk cannot be had, with nothing written."""
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        end = offset + len(view)
        if end == offset:
            return 0
        chunks = self._chunks
        taken = []
        try:
            for i in range(offset // REASSEMBLY_CHUNK, (end - 1) // REASSEMBLY_CHUNK + 1):
                if chunks[i] is None:
                    size = min(REASSEMBLY_CHUNK, self.length - i * REASSEMBLY_CHUNK)
                    chunks[i] = self._pools.acquire(size, self._owner)
                    taken.append(i)
        except MemoryBudgetExceeded:
            self._release_empty(taken)
            raise
        fresh = 0
        pos = offset
        write = self.coverage.write_fragment
        while pos < end:
            base = pos - pos % REASSEMBLY_CHUNK
            stop = min(end, base + REASSEMBLY_CHUNK)
            chunk = chunks[base // REASSEMBLY_CHUNK]
            assert chunk is not None
            # Only the first piece can open a new range: the next starts where it ended.
            n = write(chunk, pos, view[pos - offset : stop - offset], base)
            if n < 0:
                self._release_empty(taken)
                return int(n)
            fresh += n
            pos = stop
        return fresh

    def _release_empty(self, indexes: list[int]) -> None:
        for i in indexes:
            lease = self._chunks[i]
            start = i * REASSEMBLY_CHUNK
            if lease is not None and not self.coverage.overlaps(start, len(lease)):
                lease.release()
                self._chunks[i] = None

    def assemble(self, owner: Owner | None) -> tuple[Lease | None, memoryview]:
        """The complete message in one lease (charged to `owner`) and a view of its body;
        the chunks are given back. Raises MemoryBudgetExceeded (chunks kept)."""
        chunks = self._chunks
        if not chunks:
            return None, memoryview(b"")
        if len(chunks) == 1:
            lease = chunks[0]
            chunks[0] = None
        else:
            lease = self._pools.acquire(self.length, owner)
            for i, chunk in enumerate(chunks):
                assert chunk is not None
                lease.write(i * REASSEMBLY_CHUNK, chunk)
                chunk.release()
                chunks[i] = None
        assert lease is not None
        return lease, lease.view(0, self.length)

    def tobytes(self) -> bytes:
        """The complete message as bytes."""
        return b"".join(bytes(chunk) for chunk in self._chunks if chunk is not None)

    def release(self) -> None:
        for i, chunk in enumerate(self._chunks):
            if chunk is not None:
                chunk.release()
                self._chunks[i] = None
