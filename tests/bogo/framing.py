"""The runner's DTLS framing over TCP (BoringSSL ssl/test/runner/packet_adapter.go).

Runner to shim: ``P`` + u32 length + datagram; ``T`` + u64 nanoseconds (advance the clock,
fire timers; answered by ``t`` before anything the timers send); ``M`` + u32 MTU; ``E`` +
u64 nanoseconds (the next timeout must be this far away; 2^64-1: no timeout); ``U`` + u32
milliseconds (a new initial retransmission timeout). Shim to runner: ``P`` frames and ``t``.
"""

from __future__ import annotations

import socket
import struct

PACKET = ord("P")
TIMEOUT = ord("T")
TIMEOUT_ACK = ord("t")
MTU = ord("M")
EXPECT_NEXT_TIMEOUT = ord("E")
UPDATE_TIMEOUT = ord("U")
NO_TIMEOUT = (1 << 64) - 1


class Closed(Exception):
    """The runner closed the TCP connection."""


class Framing:
    """Blocking reads and writes of frames on one TCP socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def read_frame(self) -> tuple[int, object]:
        """(opcode, payload): bytes for P, an int for T/M/E/U."""
        op = self._read(1)[0]
        if op == PACKET:
            (length,) = struct.unpack(">I", self._read(4))
            return op, self._read(length)
        if op in (TIMEOUT, EXPECT_NEXT_TIMEOUT):
            return op, struct.unpack(">Q", self._read(8))[0]
        if op in (MTU, UPDATE_TIMEOUT):
            return op, struct.unpack(">I", self._read(4))[0]
        raise ValueError(f"unknown opcode {op!r}")

    def write_packet(self, data: bytes | memoryview) -> None:
        self.sock.sendall(struct.pack(">BI", PACKET, len(data)) + bytes(data))

    def write_timeout_ack(self) -> None:
        self.sock.sendall(bytes([TIMEOUT_ACK]))
