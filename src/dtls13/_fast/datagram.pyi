"""Type stubs for dtls13._fast.datagram (compiled)."""

from collections.abc import Callable
from typing import Any, Literal, Self, final

from typing_extensions import Buffer as _BufferLike

from .memory import Lease, Owner
from .protection import RecordCipher
from .record import RecordNumber, ReplayWindow

@final
class WriteEpoch:
    next_seq: int
    protected: int
    limit: int
    def __new__(cls, epoch: int, cipher: RecordCipher | None, limit: int) -> Self: ...
    @property
    def epoch(self) -> int: ...
    @property
    def cipher(self) -> RecordCipher | None: ...

@final
class DatagramWriter:
    def __new__(
        cls,
        epochs: dict[int, WriteEpoch],
        acquire: Callable[[int, Owner | None], Lease],
        owner: Owner | None,
        mtu: int,
        seq_bits: int,
        cid: bytes | None,
        omit_last_length: bool,
        padding: int,
        error: type[Exception],
    ) -> Self: ...
    @property
    def mtu(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def datagram_count(self) -> int: ...
    def space(self, epoch: int, *, last: bool = False) -> int: ...
    def add(
        self, epoch: int, content_type: int, payload: _BufferLike, *, last: bool = False
    ) -> RecordNumber | None: ...
    def new_datagram(self) -> None: ...
    def finish(self) -> list[Lease]: ...
    def abort(self) -> None: ...
    def __enter__(self) -> DatagramWriter: ...
    def __exit__(self, *exc: object) -> Literal[False]: ...

@final
class ReadEpoch:
    failures: int
    limit: int
    retire_at: float | None
    def __new__(cls, epoch: int, cipher: RecordCipher, window: int, limit: int) -> Self: ...
    @property
    def epoch(self) -> int: ...
    @property
    def cipher(self) -> RecordCipher: ...
    @property
    def window(self) -> ReplayWindow: ...

@final
class InboundRecord:
    @property
    def epoch(self) -> int: ...
    @property
    def sequence_number(self) -> int: ...
    @property
    def content_type(self) -> Any: ...
    @property
    def payload(self) -> memoryview: ...
    @property
    def record_number(self) -> RecordNumber: ...
    def tobytes(self) -> bytes: ...
    def release(self) -> None: ...

def read_datagram_untrusted(
    data: _BufferLike,
    cid_length: int,
    by_bits: dict[int, ReadEpoch],
    retired_bits: int,
    plaintext: ReplayWindow | None,
    acquire: Callable[[int, Owner | None], Lease],
    owner: Owner | None,
    drops: dict[str, int],
    content_types: dict[int, Any],
    pending: list[tuple[Lease, int]] | None = None,
    pending_budget: int = 0,
) -> tuple[list[InboundRecord], int]: ...
def open_app_datagram_untrusted(
    data: _BufferLike,
    cid_length: int,
    by_bits: dict[int, ReadEpoch],
    acquire: Callable[[int, Owner | None], Lease],
    owner: Owner | None,
    drops: dict[str, int],
    content_types: dict[int, Any],
) -> tuple[bytes, int, int] | list[InboundRecord] | None: ...
def seal_app_datagram(
    epochs: dict[int, WriteEpoch],
    epoch: int,
    acquire: Callable[[int, Owner | None], Lease],
    owner: Owner | None,
    mtu: int,
    seq_bits: int,
    cid: bytes | None,
    padding: int,
    error: type[Exception],
    payload: _BufferLike,
) -> Lease | int: ...
