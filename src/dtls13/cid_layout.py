"""The layout of the connection IDs a server issues, when it names a worker (or a machine).

A server endpoint given a ``cid_prefix`` starts every CID it issues (the one in its
ServerHello and those in NewConnectionId) with those bytes; the rest is random::

    CID = cid_prefix || random     (len(CID) = ServerConfig.cid_length, e.g. 8)

``python -m dtls13 server --workers N`` gives worker i the one-byte prefix ``bytes([i])``, and
the kernel steers a record whose header carries a CID to the worker its first byte names
(see :mod:`dtls13.steering`). A fleet can use two bytes, machine then worker: a CID-aware load
balancer routes on the first, each machine's kernel on the second (``cid_offset=1``).

The prefix is no secret: anyone who sees a client's records sees which worker serves it,
and anyone can aim datagrams at one worker by writing its byte. Neither gives more than the
address hash does: the CID routes a record to a connection, and only a record that
authenticates under that connection's keys moves or changes it (RFC 9147 §9). The random
part stays at least ``MIN_RANDOM_CID_BYTES`` long so that CIDs stay unique and unguessable.
"""

from __future__ import annotations

# Random bytes every prefixed CID keeps: 2**32 values per prefix, so a fresh CID is found
# at the first try while fewer than millions are live.
MIN_RANDOM_CID_BYTES = 4
# One byte names a worker.
MAX_WORKERS = 256


def worker_cid_prefix(index: int) -> bytes:
    """The CID prefix of worker `index` in a group that steers by the first CID byte."""
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError("a worker index is an int")
    if not 0 <= index < MAX_WORKERS:
        raise ValueError(f"a worker index is between 0 and {MAX_WORKERS - 1}")
    return bytes([index])


def check_cid_prefix(prefix: bytes, cid_length: int | None) -> bytes:
    """`prefix` as bytes when CIDs of `cid_length` bytes have room for it and enough random
    bytes after it; ValueError / TypeError otherwise."""
    if not isinstance(prefix, (bytes, bytearray, memoryview)):
        raise TypeError("cid_prefix must be bytes")
    prefix = bytes(prefix)
    if not prefix:
        return prefix
    if not cid_length:
        raise ValueError(
            "cid_prefix needs connection IDs: ServerConfig(connection_id=True or a length)"
        )
    if cid_length - len(prefix) < MIN_RANDOM_CID_BYTES:
        raise ValueError(
            f"a {len(prefix)}-byte cid_prefix needs connection_id of at least "
            f"{len(prefix) + MIN_RANDOM_CID_BYTES} bytes (it is {cid_length})"
        )
    return prefix


# Random draws an endpoint makes for one fresh CID before it gives up: with half the space
# taken, all of them collide once in 2**32 tries; a space that full refuses, never loops.
MAX_CID_DRAWS = 32


class NoFreeConnectionId(Exception):
    """Every CID drawn for a new one was taken: the endpoint's CID space is (nearly) full."""


def cid_space(cid_length: int, prefix: bytes = b"") -> int:
    """How many distinct CIDs of `cid_length` bytes start with `prefix`."""
    return int(256 ** max(0, cid_length - len(prefix)))
