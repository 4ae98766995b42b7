"""Type stubs for dtls13._fast.keys (compiled)."""

from collections.abc import Callable
from typing import Any, final

from .protection import RecordCipher

DIRECT_MASK_CTX: bool

def set_wipe_hook(hook: Callable[[bytes], object] | None) -> None: ...

@final
class EpochKeyMaker:
    hash_name: str
    tag_length: int
    chacha: bool
    def __init__(
        self,
        hash_name: str,
        key_info: bytes,
        key_length: int,
        iv_info: bytes,
        iv_length: int,
        sn_info: bytes,
        make_aead: Callable[[bytes], Any],
        tag_length: int,
        chacha: bool,
    ) -> None: ...
    def __call__(self, key: bytes, sn_key: bytes | None) -> tuple[Any, object]: ...
    def cipher(self, secret: bytes) -> RecordCipher: ...
