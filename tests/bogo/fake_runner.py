"""A tiny stand-in for BoringSSL's runner: a TCP server speaking the DTLS framing, with a
dtls13 Connection as the peer, so CI drives the BoGo shim without a BoringSSL checkout."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from framing import PACKET, TIMEOUT, TIMEOUT_ACK

SHIM = Path(__file__).with_name("shim")
PEER = ("127.0.0.1", 2)


class FakeRunner:
    """Listens, starts the shim with `flags`, and exchanges frames with it."""

    def __init__(self, flags: list[str], shim_id: int = 7) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.listener.settimeout(30)
        port = self.listener.getsockname()[1]
        self.shim_id = shim_id
        self.proc = subprocess.Popen(
            [sys.executable, str(SHIM), "-port", str(port), "-shim-id", str(shim_id), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.sock: socket.socket | None = None
        self._buf = b""

    def accept(self) -> None:
        """Take the shim's next TCP connection and check its id."""
        if self.sock is not None:
            self.sock.close()
        self.sock, _ = self.listener.accept()
        self.sock.settimeout(30)
        self._buf = b""
        (got,) = struct.unpack("<Q", self._read(8))
        assert got == self.shim_id

    def _read(self, n: int) -> bytes:
        assert self.sock is not None
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the shim closed the connection")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def read_packet(self) -> bytes | None:
        """The next datagram from the shim (None: a timeout ACK came instead)."""
        op = self._read(1)[0]
        if op == TIMEOUT_ACK:
            return None
        assert op == PACKET, op
        (length,) = struct.unpack(">I", self._read(4))
        return self._read(length)

    def send_packet(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(struct.pack(">BI", PACKET, len(data)) + data)

    def timeout(self, seconds: float) -> list[bytes]:
        """Advance the shim's clock; returns what it sent before acknowledging (lost)."""
        assert self.sock is not None
        self.sock.sendall(struct.pack(">BQ", TIMEOUT, int(seconds * 1e9)))
        lost = []
        while (packet := self.read_packet()) is not None:
            lost.append(packet)
        return lost

    def pump(self, conn: Any, now: float, until: Any, limit: int = 50) -> None:
        """Feed the shim's datagrams to `conn` and send back its answers until `until()`."""
        self.flush(conn, now)
        for _ in range(limit):
            if until():
                return
            packet = self.read_packet()
            assert packet is not None
            conn.receive_datagram(packet, PEER, now)
            self.flush(conn, now)
        raise AssertionError("no progress")

    def flush(self, conn: Any, now: float) -> None:
        for lease, _ in conn.datagrams_to_send(now):
            data = bytes(lease)
            lease.release()
            self.send_packet(data)

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Close our side and wait for the shim: (exit code, stderr)."""
        if self.sock is not None:
            self.sock.close()
        self.listener.close()
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err.decode(errors="replace")
