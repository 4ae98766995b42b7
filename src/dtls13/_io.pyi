from typing import Any

HAVE_MMSG: bool
NEEDS_SENDTO: int

class BatchSocket:
    gso: bool
    slot_size: int
    def __init__(
        self,
        fd: int,
        family: int,
        batch: int,
        slot_size: int,
        max_datagram: int,
        gso: bool = True,
    ) -> None: ...
    @property
    def batch(self) -> int: ...
    def recv(self, leases: list[Any]) -> list[tuple[int, Any]]: ...
    def truncated(self, i: int) -> bool: ...
    def copy_overflow(self, i: int, dest: Any) -> None: ...
    def send(self, items: list[tuple[Any, Any]], connected: bool) -> tuple[int, int]: ...
