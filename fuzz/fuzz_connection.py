"""Harnesses: a server Connection after a valid ClientHello, a client after a valid
server flight, each fed the fuzz input as further datagrams.

At start, each scenario of ``fuzz_common.SCENARIOS`` (suites, groups incl.
X25519MLKEM768, HelloRetryRequests, a 256-byte MTU, connection IDs, resumption, 0-RTT) is
handshaken once in memory and recorded. Each input replays the recorded prefix into a
fresh connection (deterministic: the same keys as the recording) and then delivers its
chunks: input = selector byte (scenario: its low seven bits; bit 7: no prefix, the
chunks play the peer from its first datagram on, hellos included), then
``tag:1 length:2 data`` chunks (tag < 0x40:
a datagram, 1 ms later; 0x40 <= tag < 0x80: a record sealed with the peer's keys, see
``Sealer``; tag >= 0x80: the clock moves (tag & 0x7F) / 10 s and timers run).

Sealed records reach what a malicious peer (who holds the keys) can send: handshake
messages, KeyUpdates, tickets, ACKs and alerts inside protected epochs, which mutated
ciphertext never gets past authentication to reach.

Nothing may escape ``receive_datagram``, ``handle_timer``, ``datagrams_to_send`` or
``next_event`` (the configs set ``debug=True``: an unexpected exception inside the core
escapes instead of becoming an internal_error alert; an internal_error alert for anything
but the memory budget fails too), and after ``close()`` and a last ``datagrams_to_send()``
the pools must be back to zero.
"""

from __future__ import annotations

import sys

import fuzz_common

from dtls13.connection import Connection
from dtls13.crypto.suites import CipherSuite
from dtls13.events import ConnectionTerminated
from dtls13.memory import PoolSet
from dtls13.record import ContentType, RecordLayer

POOLS = PoolSet()
_RECORDINGS: dict[int, fuzz_common.Recording] = {}


def recording(index: int) -> fuzz_common.Recording:
    if index not in _RECORDINGS:
        _RECORDINGS[index] = fuzz_common.record(index, POOLS)
    return _RECORDINGS[index]


# tag & 3 of a sealed chunk
SEALED_TYPES = (
    ContentType.handshake,
    ContentType.application_data,
    ContentType.alert,
    ContentType.ack,
)
# Sealed records are numbered from here in each epoch: past what the recording sent.
SEALED_FIRST_SEQ = 64


class Sealer:
    """Seals records as the peer would: with the read keys `conn` installs (captured as it
    installs them), carrying `conn`'s connection ID once one is negotiated.

    Chunk tag 0x40 | e << 2 | t: a record of content type ``SEALED_TYPES[t]`` whose
    content is the chunk's payload, in epoch `e` if `conn` has read keys for it, else in
    the newest epoch it has keys for; epoch 0 (or no keys yet): a plaintext record.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.keys: list[tuple[int, CipherSuite, bytes]] = []
        self.writer: RecordLayer | None = None

    def spy(self, layer: RecordLayer, epoch: int, suite: CipherSuite, secret: bytes) -> None:
        if layer is self.conn._records:
            self.keys.append((epoch, suite, secret))

    def seal(self, tag: int, payload: bytes) -> bytes:
        if self.writer is None:
            self.writer = RecordLayer(POOLS)
        writer = self.writer
        conn = self.conn
        writer.write_cid = conn.local_cids[0] if conn.cid_negotiated and conn.local_cids else None
        for epoch, suite, secret in self.keys:
            if epoch > writer.write_epoch:
                writer.install_write_epoch(epoch, suite, secret)
                writer._write_now.next_seq = SEALED_FIRST_SEQ
        wanted = (tag >> 2) & 0x0F
        epochs = {0, *(k[0] for k in self.keys)}
        epoch = wanted if wanted in epochs else max(epochs)
        w = writer.datagram_writer(65535)
        try:
            w.add(epoch, SEALED_TYPES[tag & 3], payload[:16384])
        except BaseException:
            w.abort()
            raise
        out = b""
        for lease in w.finish():
            out += bytes(lease)
            lease.release()
        return out

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


_SEALER: Sealer | None = None
_original_install_read_epoch = RecordLayer.install_read_epoch


def _spying_install_read_epoch(
    layer: RecordLayer, epoch: int, suite: CipherSuite, traffic_secret: bytes, now: float
) -> None:
    _original_install_read_epoch(layer, epoch, suite, traffic_secret, now)
    if _SEALER is not None:
        _SEALER.spy(layer, epoch, suite, traffic_secret)


def _check_events(conn: Connection) -> None:
    for event in fuzz_common.events(conn):
        if isinstance(event, ConnectionTerminated) and not event.by_peer:
            # Our own internal_error means an exception inside the core: a bug.
            internal = event.alert is not None and event.alert.name == "internal_error"
            assert not internal or event.reason.startswith("memory budget"), event


def _feed(conn: Connection, sealer: Sealer, peer: object, data: bytes, now: float) -> None:
    for tag, payload in fuzz_common.split_chunks(data):
        if tag & 0x80:
            now += (tag & 0x7F) / 10
            timer = conn.get_timer()
            if timer is not None and timer <= now:
                conn.handle_timer(now)
        else:
            now += 0.001
            datagram = sealer.seal(tag, payload) if tag & 0x40 else payload
            conn.receive_datagram(datagram, peer, now)
        fuzz_common.drain(conn, now)
        _check_events(conn)
    conn.close()
    fuzz_common.drain(conn, now)
    _check_events(conn)


def scenario_index(selector: int) -> int:
    """The scenario of a selector byte: its low seven bits (bit 7: no prefix)."""
    return (selector & 0x7F) % len(fuzz_common.SCENARIOS)


def _run(side: str, data: bytes) -> None:
    global _SEALER
    if not data:
        return
    # Only while a harness runs: the sealer learns the keys as the connection installs them.
    RecordLayer.install_read_epoch = _spying_install_read_epoch
    try:
        _run_connection(side, data)
    finally:
        RecordLayer.install_read_epoch = _original_install_read_epoch
        _SEALER = None


def _run_connection(side: str, data: bytes) -> None:
    global _SEALER
    rec = recording(scenario_index(data[0]))
    rec.configs.reset()
    if side == "server":
        conn = fuzz_common.new_server(rec.configs, POOLS)
        prefix, peer = rec.to_server[: rec.server_prefix], fuzz_common.CLIENT_ADDR
    else:
        conn = fuzz_common.new_client(rec.configs, POOLS)
        fuzz_common.start_client(conn, rec.scenario)
        prefix, peer = rec.to_client[: rec.client_prefix], fuzz_common.SERVER_ADDR
    if data[0] & 0x80:
        prefix = []
    now = fuzz_common.START
    sealer = _SEALER = Sealer(conn)
    try:
        for d in prefix:
            now = d.at
            conn.receive_datagram(d.data, peer, now)
            fuzz_common.drain(conn, now)
        fuzz_common.events(conn)
        _feed(conn, sealer, peer, data[1:], now)
    finally:
        conn.close()
        fuzz_common.drain(conn, now)
        sealer.close()
    fuzz_common.check_pools(POOLS, f"{side} connection ({rec.scenario.name})")


def server_input(data: bytes) -> None:
    with fuzz_common.pinned_key_shares():
        _run("server", data)


def client_input(data: bytes) -> None:
    with fuzz_common.pinned_key_shares():
        _run("client", data)


if __name__ == "__main__":
    # python fuzz/fuzz_connection.py server|client [libFuzzer options] [corpus dirs]
    side = sys.argv.pop(1)
    fuzz_common.atheris_main(server_input if side == "server" else client_input)
