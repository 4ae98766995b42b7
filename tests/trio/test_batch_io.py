"""dtls13._io.BatchSocket: recvmmsg into leases, sendmmsg (with UDP GSO) of (lease, address)
items, the errors a caller acts on. Linux only: elsewhere the module says it has no batch
calls and refuses to make one (the adapter then uses the plain path, tested through it)."""

from __future__ import annotations

import errno
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from dtls13 import _io
from dtls13.memory import DATAGRAM_SLOT, Lease, PoolSet

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="recvmmsg is Linux's")


@pytest.fixture
def pools() -> PoolSet:
    return PoolSet()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    yield a, b
    a.close()
    b.close()


def _filled(pools: PoolSet, size: int, byte: int) -> Lease:
    lease = pools.acquire(size)
    lease.write(0, bytes([byte]) * size)
    return lease


def test_the_module_says_whether_the_platform_has_batch_calls() -> None:
    assert _io.HAVE_MMSG is sys.platform.startswith("linux")


@linux_only
def test_one_receive_takes_every_waiting_datagram_with_its_address(
    pools: PoolSet, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    batch = _io.BatchSocket(b.fileno(), socket.AF_INET, 8, DATAGRAM_SLOT, 65536)
    for i in range(5):
        a.sendto(bytes([i]) * (100 + i), b.getsockname())
    leases = [pools.acquire(DATAGRAM_SLOT) for _ in range(8)]
    try:
        got = batch.recv(leases)
        assert [n for n, _ in got] == [100, 101, 102, 103, 104]
        assert {addr for _, addr in got} == {a.getsockname()}
        for i, (n, _) in enumerate(got):
            assert leases[i].tobytes()[:n] == bytes([i]) * n
        assert batch.recv(leases) == []  # nothing left: EAGAIN is an empty batch
    finally:
        for lease in leases:
            lease.release()


@linux_only
def test_a_datagram_longer_than_its_slot_is_whole_after_copy_overflow(
    pools: PoolSet, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    batch = _io.BatchSocket(b.fileno(), socket.AF_INET, 4, DATAGRAM_SLOT, 65536)
    payload = bytes(range(256)) * 20  # 5120 bytes, more than a datagram slot
    a.sendto(b"short", b.getsockname())
    a.sendto(payload, b.getsockname())
    leases = [pools.acquire(DATAGRAM_SLOT) for _ in range(4)]
    big = pools.acquire(len(payload))
    try:
        (n0, _), (n1, _) = batch.recv(leases)
        assert (n0, n1) == (5, len(payload)) and not batch.truncated(1)
        big.write(0, leases[1].tobytes())
        batch.copy_overflow(1, big)
        assert big.tobytes() == payload
    finally:
        big.release()
        for lease in leases:
            lease.release()


@linux_only
def test_overflow_space_is_per_overflow_area_not_per_slot(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _, b = pair
    tail = 65536 - DATAGRAM_SLOT
    shared = _io.BatchSocket(b.fileno(), socket.AF_INET, 64, DATAGRAM_SLOT, 65536)
    four = _io.BatchSocket(b.fileno(), socket.AF_INET, 64, DATAGRAM_SLOT, 65536, overflow_slots=4)
    none = _io.BatchSocket(b.fileno(), socket.AF_INET, 8, DATAGRAM_SLOT, DATAGRAM_SLOT)
    assert (shared.overflow_slots, shared.overflow_reserved) == (1, tail)
    assert (four.overflow_slots, four.overflow_reserved) == (4, 4 * tail)
    assert none.overflow_reserved == 0
    with pytest.raises(ValueError):
        _io.BatchSocket(b.fileno(), socket.AF_INET, 8, DATAGRAM_SLOT, 65536, overflow_slots=0)


@linux_only
@pytest.mark.parametrize("overflow_slots", [1, 2, 3])
def test_more_long_datagrams_than_overflow_areas_each_is_whole_or_lost(
    pools: PoolSet, pair: tuple[socket.socket, socket.socket], overflow_slots: int
) -> None:
    a, b = pair
    batch = _io.BatchSocket(
        b.fileno(), socket.AF_INET, 8, DATAGRAM_SLOT, 65536, overflow_slots=overflow_slots
    )
    payloads = [bytes([i]) * (3000 + 100 * i) for i in range(6)]
    payloads.insert(2, b"short")
    for p in payloads:
        a.sendto(p, b.getsockname())
    time.sleep(0.05)
    leases = [pools.acquire(DATAGRAM_SLOT) for _ in range(8)]
    try:
        got = batch.recv(leases)
        assert [n for n, _ in got] == [len(p) for p in payloads]
        whole = 0
        for i, p in enumerate(payloads):
            if batch.lost(i):
                with pytest.raises(ValueError):
                    batch.copy_overflow(i, bytearray(len(p)))
                continue
            out = bytearray(len(p))
            out[: min(len(p), DATAGRAM_SLOT)] = leases[i].tobytes()[: len(p)]
            batch.copy_overflow(i, out)
            assert bytes(out) == p
            whole += 1
        # The last long datagram on each area keeps its tail; the short one needs none.
        assert whole == overflow_slots + 1
    finally:
        for lease in leases:
            lease.release()


@linux_only
def test_a_receive_of_no_more_datagrams_than_overflow_areas_loses_none(
    pools: PoolSet, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    batch = _io.BatchSocket(b.fileno(), socket.AF_INET, 8, DATAGRAM_SLOT, 65536, overflow_slots=2)
    for i in range(4):
        a.sendto(bytes([i]) * 4000, b.getsockname())
    time.sleep(0.05)
    leases = [pools.acquire(DATAGRAM_SLOT) for _ in range(2)]
    try:
        for _ in range(2):
            got = batch.recv(leases)
            assert [n for n, _ in got] == [4000, 4000]
            assert not batch.lost(0) and not batch.lost(1)
    finally:
        for lease in leases:
            lease.release()


@linux_only
def test_a_datagram_longer_than_max_datagram_is_lost_not_cut_silently(
    pools: PoolSet, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    batch = _io.BatchSocket(b.fileno(), socket.AF_INET, 4, DATAGRAM_SLOT, 4096)
    a.sendto(b"x" * 5000, b.getsockname())
    a.sendto(b"y" * 4096, b.getsockname())
    time.sleep(0.05)
    leases = [pools.acquire(DATAGRAM_SLOT) for _ in range(4)]
    try:
        got = batch.recv(leases)
        assert [n for n, _ in got] == [4096, 4096]
        assert batch.truncated(0) and batch.lost(0)
        assert not batch.truncated(1) and not batch.lost(1)
    finally:
        for lease in leases:
            lease.release()


@linux_only
def test_one_send_delivers_equal_datagrams_and_a_shorter_last_one_separately(
    pools: PoolSet, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    sender = _io.BatchSocket(a.fileno(), socket.AF_INET, 8, DATAGRAM_SLOT, 65536)
    receiver = _io.BatchSocket(b.fileno(), socket.AF_INET, 8, DATAGRAM_SLOT, 65536)
    # Five equal datagrams and a shorter last one to one address: one GSO send where the
    # kernel has it; the receiver sees six datagrams, byte for byte.
    items = [(_filled(pools, 1200 if i < 5 else 300, i), b.getsockname()) for i in range(6)]
    leases = [pools.acquire(DATAGRAM_SLOT) for _ in range(8)]
    try:
        assert sender.send(items, False) == (6, 0)
        got = receiver.recv(leases)
        assert [n for n, _ in got] == [1200] * 5 + [300]
        for i, (n, _) in enumerate(got):
            assert leases[i].tobytes()[:n] == bytes([i]) * n
    finally:
        for lease in leases:
            lease.release()
        for lease, _ in items:
            lease.release()


@linux_only
def test_segmentation_off_sends_the_same_datagrams(
    pools: PoolSet, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    sender = _io.BatchSocket(a.fileno(), socket.AF_INET, 8, DATAGRAM_SLOT, 65536, gso=False)
    assert not sender.gso
    receiver = _io.BatchSocket(b.fileno(), socket.AF_INET, 8, DATAGRAM_SLOT, 65536)
    items = [(_filled(pools, 700, i), b.getsockname()) for i in range(4)]
    leases = [pools.acquire(DATAGRAM_SLOT) for _ in range(8)]
    try:
        assert sender.send(items, False) == (4, 0)
        assert [n for n, _ in receiver.recv(leases)] == [700] * 4
    finally:
        for lease in leases:
            lease.release()
        for lease, _ in items:
            lease.release()


@linux_only
def test_an_address_it_does_not_parse_is_left_to_sendto(
    pools: PoolSet, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    sender = _io.BatchSocket(a.fileno(), socket.AF_INET, 8, DATAGRAM_SLOT, 65536)
    lease = _filled(pools, 10, 1)
    try:
        items = [(lease, b.getsockname()), (lease, ("localhost", 1)), (lease, b.getsockname())]
        assert sender.send(items, False) == (1, _io.NEEDS_SENDTO)
    finally:
        lease.release()


@linux_only
def test_icmp_port_unreachable_reaches_a_connected_socket_as_connection_refused(
    pools: PoolSet,
) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    s.connect(("127.0.0.1", port))
    batch = _io.BatchSocket(s.fileno(), socket.AF_INET, 4, DATAGRAM_SLOT, 65536)
    lease = _filled(pools, 10, 1)
    leases = [pools.acquire(DATAGRAM_SLOT)]
    try:
        assert batch.send([(lease, None)], True) == (1, 0)
        deadline = time.monotonic() + 5
        while True:  # the ICMP report arrives asynchronously
            try:
                batch.recv(leases)
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # A report still pending fails the next send at its first item.
        assert batch.send([(lease, None)], True) in ((1, 0), (0, errno.ECONNREFUSED))
    finally:
        lease.release()
        leases[0].release()
        s.close()


@linux_only
def test_ipv6_addresses_come_back_as_recvfrom_reports_them(pools: PoolSet) -> None:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        s.bind(("::1", 0))
    except OSError:
        s.close()
        pytest.fail("no IPv6 loopback on this machine")
    s.setblocking(False)
    batch = _io.BatchSocket(s.fileno(), socket.AF_INET6, 4, DATAGRAM_SLOT, 65536)
    lease = _filled(pools, 50, 7)
    leases = [pools.acquire(DATAGRAM_SLOT) for _ in range(4)]
    try:
        assert batch.send([(lease, s.getsockname())] * 3, False) == (3, 0)
        got = batch.recv(leases)
        assert got == [(50, s.getsockname())] * 3
    finally:
        lease.release()
        for x in leases:
            x.release()
        s.close()


@pytest.mark.skipif(_io.HAVE_MMSG, reason="only where the platform has no recvmmsg")
def test_without_batch_calls_no_batch_socket_is_made() -> None:
    with pytest.raises(OSError):
        _io.BatchSocket(0, socket.AF_INET, 4, DATAGRAM_SLOT, 65536)
