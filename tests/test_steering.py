"""The reuseport steering program: records with a CID go to the socket their worker byte
names, everything else is hashed by the kernel as without a program."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator

import pytest

from dtls13 import steering
from dtls13.steering import attach_steering, bind_group, steering_program

GROUP = 4
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_ATTACH_REUSEPORT_CBPF is Linux's"
)


def _record(first: int, cid: bytes, body: bytes = b"\x00\x05" + bytes(30)) -> bytes:
    return bytes([first]) + cid + body


CLIENT_HELLO = bytes([22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 1]) + bytes(40)
# name, payload, worker index the program returns (None: the kernel hashes)
CASES = [
    ("cid record, worker 0", _record(0x3C, b"\x00" + bytes(7)), 0),
    ("cid record, worker 2", _record(0x3F, b"\x02" + bytes(7)), 2),
    ("cid record, worker 3, short header", _record(0x30, b"\x03" + bytes(7)), 3),
    ("cid byte beyond the group", _record(0x3C, b"\x09" + bytes(7)), None),
    ("unified header without cid", _record(0x2C, b"\x02" + bytes(7)), None),
    ("client hello", CLIENT_HELLO, None),
    ("plaintext alert", bytes([21, 0xFE, 0xFD]) + bytes(12), None),
    ("tls12_cid content type", _record(25, b"\x02" + bytes(7)), None),
    ("one byte", b"\x3c", None),
    ("header and worker byte only", b"\x3c\x01", 1),
    ("empty", b"", None),
]


def _run(program: list[tuple[int, int, int, int]], payload: bytes, group: int) -> int | None:
    """Classic BPF as the kernel runs a reuseport program over a UDP payload, for the
    instructions steering_program() uses: the chosen socket, or None (hash)."""
    a = pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == steering.BPF_LD | steering.BPF_W | steering.BPF_LEN:
            a = len(payload)
        elif code == steering.BPF_LD | steering.BPF_B | steering.BPF_ABS:
            if k >= len(payload):
                return 0  # a load past the end ends the program with 0
            a = payload[k]
        elif code == steering.BPF_ALU | steering.BPF_AND | steering.BPF_K:
            a &= k
        elif code == steering.BPF_JMP | steering.BPF_JGE | steering.BPF_K:
            pc += jt if a >= k else jf
        elif code == steering.BPF_JMP | steering.BPF_JEQ | steering.BPF_K:
            pc += jt if a == k else jf
        elif code in (steering.BPF_RET | steering.BPF_A, steering.BPF_RET | steering.BPF_K):
            index = a if code == steering.BPF_RET | steering.BPF_A else k
            return index if index < group else None  # the kernel hashes past the group
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")


@pytest.mark.parametrize(("name", "payload", "worker"), CASES, ids=[c[0] for c in CASES])
def test_program_picks_the_worker_byte_of_records_with_a_cid_only(
    name: str, payload: bytes, worker: int | None
) -> None:
    assert _run(steering_program(), payload, GROUP) == worker


def test_program_reads_the_cid_byte_at_the_offset_it_is_given() -> None:
    program = steering_program(cid_offset=1)  # machine byte, then worker byte
    assert _run(program, _record(0x3C, b"\x07\x02" + bytes(6)), GROUP) == 2
    assert _run(program, b"\x3c\x07", GROUP) is None  # too short for the worker byte
    with pytest.raises(ValueError):
        steering_program(cid_offset=32)
    with pytest.raises(TypeError):
        steering_program(cid_offset=True)


def test_jumps_stay_inside_the_program() -> None:
    program = steering_program()
    for pc, (code, jt, jf, _) in enumerate(program):
        if code & 0x07 == steering.BPF_JMP:
            assert pc + 1 + max(jt, jf) < len(program)
    assert program[-1][0] & 0x07 == steering.BPF_RET


# -- in the kernel ------------------------------------------------------------------------


@pytest.fixture
def group() -> Iterator[list[socket.socket]]:
    socks = bind_group(socket.AF_INET, ("127.0.0.1", 0), GROUP)
    ports = {s.getsockname()[1] for s in socks}
    assert len(ports) == 1
    for s in socks:
        s.setblocking(False)
    yield socks
    for s in socks:
        s.close()


def _receivers(socks: list[socket.socket], payload: bytes, sender: socket.socket) -> list[int]:
    """Which sockets of the group `payload` reached (sent from `sender`)."""
    sender.sendto(payload, socks[0].getsockname())
    got: list[int] = []
    deadline = time.monotonic() + 2
    while not got and time.monotonic() < deadline:
        for i, s in enumerate(socks):
            try:
                if s.recv(2048) == payload:
                    got.append(i)
            except BlockingIOError:
                pass
        time.sleep(0.001)
    return got


@linux_only
def test_kernel_sends_each_cid_record_to_the_socket_its_byte_names(
    group: list[socket.socket],
) -> None:
    attach_steering(group[0])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        for worker in (0, 1, 2, 3, 3, 1, 0, 2):
            record = _record(0x3C, bytes([worker]) + bytes(7))
            assert _receivers(group, record, sender) == [worker]


@linux_only
@pytest.mark.parametrize(("name", "payload", "worker"), CASES, ids=[c[0] for c in CASES])
def test_kernel_agrees_with_the_model(
    group: list[socket.socket], name: str, payload: bytes, worker: int | None
) -> None:
    """From one source the kernel's hash always picks the same socket: datagrams the
    program leaves to it go where a plaintext datagram from that source goes."""
    attach_steering(group[0])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        (hashed,) = _receivers(group, CLIENT_HELLO, sender)
        # A worker byte other than the hash's choice, so steering shows.
        expected = hashed if worker is None else worker
        assert _receivers(group, payload, sender) == [expected]
        if worker is not None and worker != hashed:
            return
        # Same socket as the hash by chance, or hashed: a different CID byte must be
        # steered elsewhere from the same source.
        other = (hashed + 1) % GROUP
        assert _receivers(group, _record(0x3C, bytes([other]) + bytes(7)), sender) == [other]


@linux_only
def test_kernel_still_spreads_handshakes_over_the_group(group: list[socket.socket]) -> None:
    attach_steering(group[0])
    seen: set[int] = set()
    for _ in range(32):  # all on one socket by chance: 4 * 4**-32
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.bind(("127.0.0.1", 0))
            (i,) = _receivers(group, CLIENT_HELLO, sender)
            seen.add(i)
    assert len(seen) > 1


@linux_only
def test_without_the_program_one_source_reaches_one_socket(group: list[socket.socket]) -> None:
    """What the steering changes: without it, the CID byte decides nothing."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        reached = {
            i
            for worker in range(GROUP)
            for i in _receivers(group, _record(0x3C, bytes([worker]) + bytes(7)), sender)
        }
    assert len(reached) == 1


def test_attaching_elsewhere_than_linux_is_an_os_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steering.sys, "platform", "darwin")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(OSError):
        attach_steering(s)


@linux_only
def test_attaching_to_a_socket_outside_a_reuseport_group_is_an_os_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        with pytest.raises(OSError):
            attach_steering(s)


def test_bind_group_never_joins_a_port_taken_without_reuseport() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))  # without SO_REUSEPORT: nobody may join
        with pytest.raises(OSError):
            bind_group(socket.AF_INET, taken.getsockname(), 2)
