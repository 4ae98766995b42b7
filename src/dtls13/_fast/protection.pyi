"""Type stubs for dtls13._fast.protection (compiled)."""

from collections.abc import Callable
from typing import Self, final

from typing_extensions import Buffer as _BufferLike

from .memory import Lease
from .record import ReplayWindow

OPEN_AUTH_FAILED: int
OPEN_REPLAY: int
OPEN_BAD_CONTENT_TYPE: int

@final
class RecordCipher:
    tag_length: int
    chacha: bool
    builds: int
    def __new__(
        cls,
        build: Callable[[bytes, bytes | None], tuple[object, object]],
        key: _BufferLike,
        iv: _BufferLike,
        sn_key: _BufferLike,
        tag_length: int,
        chacha: bool,
    ) -> Self: ...
    @property
    def built(self) -> bool: ...
    def release(self) -> None: ...
    def nonce(self, seq: int) -> bytearray: ...
    def mask(self, data: _BufferLike, offset: int) -> bytearray: ...
    def inner_length(self, payload_length: int, padding: int) -> int: ...
    def seal_into(
        self,
        buf: _BufferLike,
        pos: int,
        epoch: int,
        seq: int,
        seq_bits: int,
        cid: bytes | None,
        with_length: bool,
        content_type: int,
        payload: _BufferLike,
        padding: int,
    ) -> int: ...
    def open_untrusted(
        self,
        data: _BufferLike,
        offset: int,
        header_length: int,
        length: int,
        window: ReplayWindow,
        lease: Lease,
    ) -> tuple[int, int, int]: ...

def secret_refcount(obj: object) -> int: ...
def wipe_secret(secret: object, sole: int) -> bool: ...
