"""Type stubs for dtls13._fast.handshake (compiled)."""

from typing import Any, Self, final

from typing_extensions import Buffer as _BufferLike

FRAGMENT_MISMATCH: int
FRAGMENT_TOO_SCATTERED: int

@final
class FragmentCoverage:
    length: int
    covered: int
    max_ranges: int
    def __new__(cls, length: int, max_ranges: int = -1) -> Self: ...
    @property
    def complete(self) -> bool: ...
    @property
    def range_count(self) -> int: ...
    def ranges(self) -> list[tuple[int, int]]: ...
    def add(self, offset: int, length: int) -> int: ...
    def covers(self, offset: int, length: int) -> bool: ...
    def overlaps(self, offset: int, length: int) -> bool: ...
    def write_fragment(
        self, dest: _BufferLike, offset: int, data: _BufferLike, base: int = -1
    ) -> int: ...

def scan_client_hello(
    data: _BufferLike, max_hello: int
) -> (
    tuple[
        int,
        int,
        tuple[int, ...],
        tuple[int, ...] | None,
        tuple[int, ...] | None,
        tuple[int, ...] | None,
        int,
        bool,
    ]
    | None
): ...
def hmac_digest(key: bytes, msg: bytes, digestmod: str) -> bytes: ...
def transcript_add(hashes: dict[str, Any], msg_type: int, body: _BufferLike) -> None: ...
def hash_copy_digest(running: Any) -> bytes: ...
def handshake_fragment(
    msg_type: int,
    length: int,
    message_seq: int,
    offset: int,
    body: _BufferLike,
    start: int = 0,
    end: int = -1,
) -> bytes: ...
