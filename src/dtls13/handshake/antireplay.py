"""Anti-replay stores for 0-RTT: which tickets' early data was already accepted (RFC 8446 §8).

A ticket's early data is accepted at most once by all the servers that consult one store.
`ReplayGuard` serves one process; `SharedMemoryReplayGuard` serves every process on one
machine that opens the same file (``--workers`` share one made before they fork);
`RedisReplayGuard` serves a fleet through Redis (``SET key NX PX``). Every store fails
closed: when it is full or unreachable, 0-RTT is refused and the handshake goes on in 1-RTT.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import tempfile
import threading
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "PROCESS_REPLAY_GUARD",
    "RedisReplayGuard",
    "ReplayGuard",
    "ReplayStore",
    "SharedMemoryReplayGuard",
]


@runtime_checkable
class ReplayStore(Protocol):
    """What a server asks before it accepts a ticket's early data."""

    def first_use(self, ticket: bytes, expires: float, now: float) -> bool:
        """True exactly once per ticket until `expires` (wall-clock seconds); False for a
        replay, and whenever the store cannot tell (full, unreachable)."""
        ...


class ReplayGuard:
    """Tickets already used for 0-RTT in this process, forgotten when they expire.

    Guarantee: a ticket's early data is accepted at most once by all the servers that
    consult this guard; every ServerConfig of a process consults PROCESS_REPLAY_GUARD unless
    given another store. The set is bounded, and when it is full 0-RTT is refused (never
    accepted twice).
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._seen: dict[bytes, float] = {}  # ticket digest -> expiry (wall clock)
        self._pruned_at = float("-inf")
        self._lock = threading.Lock()  # first_use is a check-then-set

    def __len__(self) -> int:
        return len(self._seen)

    def first_use(self, ticket: bytes, expires: float, now: float) -> bool:
        if expires <= now:
            return False
        key = hashlib.sha256(ticket).digest()
        with self._lock:
            if len(self._seen) >= self.capacity and now - self._pruned_at >= 1.0:
                # At most once a second: a full guard is not rescanned per attempt.
                self._pruned_at = now
                self._seen = {k: t for k, t in self._seen.items() if t > now}
            if self._seen.get(key, now) > now or len(self._seen) >= self.capacity:
                return False
            self._seen[key] = expires
            return True


# Shared by every ServerConfig in the process: configurations with the same ticket
# secret open the same tickets, so one guard must see all their 0-RTT attempts.
PROCESS_REPLAY_GUARD = ReplayGuard()


_MAGIC = b"dtls13-0rtt-v1\0\0"
_HEADER = struct.Struct("<16sQQ")  # magic, capacity, probe length
_SLOT = struct.Struct("<16sd")  # ticket digest (first 16 bytes of SHA-256), expiry


class SharedMemoryReplayGuard:
    """Tickets already used for 0-RTT, in a table shared by every process on the machine
    that maps the same file.

    The table is a fixed array of slots (digest, expiry) in a memory-mapped file, searched
    by linear probing over at most `probe` slots and guarded by a POSIX record lock (one
    holder across processes) plus a thread lock (one holder inside a process). With no
    `path`, the file is an unlinked temporary one: processes forked after the guard was made
    share it (that is how ``--workers`` use it). With a `path` (on tmpfs, e.g. /dev/shm),
    unrelated processes share it too; they must agree on `capacity` and `probe`. When every
    slot a ticket may use holds a live entry, 0-RTT is refused.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, capacity: int = 65_536, probe: int = 32
    ) -> None:
        if capacity < 1 or not 1 <= probe <= capacity:
            raise ValueError("capacity must be at least 1 and probe between 1 and capacity")
        self.capacity = capacity
        self.probe = probe
        size = _HEADER.size + capacity * _SLOT.size
        if path is None:
            fd, name = tempfile.mkstemp(prefix="dtls13-0rtt-", dir=_shm_dir())
            os.unlink(name)
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._fd = fd
        self._lock = threading.Lock()
        try:
            with self._locked():
                existing = os.fstat(fd).st_size
                if existing == 0:
                    os.ftruncate(fd, size)
                    self._map = mmap.mmap(fd, size, mmap.MAP_SHARED)
                    _HEADER.pack_into(self._map, 0, _MAGIC, capacity, probe)
                else:
                    if existing != size:
                        raise ValueError(f"{path}: not a replay table of capacity {capacity}")
                    self._map = mmap.mmap(fd, size, mmap.MAP_SHARED)
                    if _HEADER.unpack_from(self._map, 0) != (_MAGIC, capacity, probe):
                        self._map.close()
                        raise ValueError(f"{path}: a replay table made with other settings")
        except BaseException:
            os.close(fd)
            raise

    def _locked(self) -> _FileLock:
        return _FileLock(self._lock, self._fd)

    def first_use(self, ticket: bytes, expires: float, now: float) -> bool:
        if expires <= now:
            return False
        key = hashlib.sha256(ticket).digest()[:16]
        start = int.from_bytes(key[:8], "little") % self.capacity
        table = self._map
        with self._locked():
            free = -1
            # The whole probe run is read: an entry may sit after a slot that expired later.
            for i in range(self.probe):
                offset = _HEADER.size + ((start + i) % self.capacity) * _SLOT.size
                digest, until = _SLOT.unpack_from(table, offset)
                if until > now:
                    if digest == key:
                        return False
                elif free < 0:
                    free = offset
            if free < 0:
                return False
            _SLOT.pack_into(table, free, key, expires)
            return True

    def __len__(self) -> int:
        """Live and expired entries still in the table (for statistics and tests)."""
        with self._locked():
            return sum(
                1
                for i in range(self.capacity)
                if _SLOT.unpack_from(self._map, _HEADER.size + i * _SLOT.size)[1] != 0.0
            )

    def close(self) -> None:
        """Unmap the table and close its file (the file itself stays for other processes)."""
        if self._fd >= 0:
            self._map.close()
            os.close(self._fd)
            self._fd = -1


class _FileLock:
    """The thread lock, then an exclusive POSIX record lock on the whole file."""

    def __init__(self, lock: threading.Lock, fd: int) -> None:
        self._lock = lock
        self._fd = fd

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()


def _shm_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class RedisReplayGuard:
    """Tickets already used for 0-RTT, as keys in Redis: every server that uses the same
    Redis sees every 0-RTT use (``SET key 1 NX PX ttl``: set only if absent, expiring with
    the ticket).

    `client` is a synchronous redis-py ``Redis`` (or anything with its ``set(name, value,
    nx=, px=)``); it is called in the handshake path, so give it a short socket timeout.
    An error (Redis down, timeout) refuses 0-RTT and is counted in `errors`.
    """

    def __init__(self, client: Any, prefix: str = "dtls13:0rtt:") -> None:
        if not callable(getattr(client, "set", None)):
            raise TypeError("client must be a redis.Redis (or have its set(name, value, nx, px))")
        self.client = client
        self.prefix = prefix
        self.errors = 0

    @classmethod
    def from_url(
        cls, url: str, timeout: float = 0.05, prefix: str = "dtls13:0rtt:"
    ) -> RedisReplayGuard:
        """A guard over ``redis.Redis.from_url(url)`` with `timeout` seconds per call."""
        try:
            import redis
        except ImportError as err:
            raise ImportError(
                "RedisReplayGuard.from_url needs the redis package: pip install redis"
            ) from err
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, prefix)

    def first_use(self, ticket: bytes, expires: float, now: float) -> bool:
        ttl_ms = math.ceil((expires - now) * 1000)
        if ttl_ms <= 0:
            return False
        key = self.prefix + hashlib.sha256(ticket).hexdigest()
        try:
            return bool(self.client.set(key, b"1", nx=True, px=ttl_ms))
        except Exception:  # any failure of the store: refuse 0-RTT rather than risk a replay
            self.errors += 1
            return False
