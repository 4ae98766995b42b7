"""Type stubs for dtls13._fast.datagram (compiled)."""

from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, Self, final

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

class _Layer(Protocol):
    """What the compiled paths use of a RecordLayer: its write epochs (the newest and the
    older ones kept) and its drop counters (`own_drops()` makes them a dict of its own)."""

    _write_now: WriteEpoch
    _write_older: tuple[WriteEpoch, ...]
    @property
    def drops(self) -> Mapping[str, int]: ...
    def own_drops(self) -> dict[str, int]: ...

@final
class DatagramWriter:
    def __new__(
        cls,
        layer: _Layer,
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
    read_newest: ReadEpoch | None,
    read_older: tuple[ReadEpoch, ...],
    retired_bits: int,
    plaintext: ReplayWindow | None,
    acquire: Callable[[int, Owner | None], Lease],
    owner: Owner | None,
    layer: _Layer,
    content_types: dict[int, Any],
    pending: list[tuple[Lease, int]] | None = None,
    pending_budget: int = 0,
) -> tuple[list[InboundRecord], int]: ...
def open_app_datagram_untrusted(
    data: _BufferLike,
    cid_length: int,
    read_newest: ReadEpoch | None,
    read_older: tuple[ReadEpoch, ...],
    acquire: Callable[[int, Owner | None], Lease],
    owner: Owner | None,
    layer: _Layer,
    content_types: dict[int, Any],
) -> tuple[bytes, int, int] | list[InboundRecord] | None: ...
def seal_app_datagram(
    layer: _Layer,
    acquire: Callable[[int, Owner | None], Lease],
    owner: Owner | None,
    mtu: int,
    seq_bits: int,
    cid: bytes | None,
    padding: int,
    error: type[Exception],
    payload: _BufferLike,
) -> Lease | int: ...
