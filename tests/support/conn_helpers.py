"""Helpers for tests that step a client/server pair by hand and inject crafted records."""

from __future__ import annotations

from collections import deque

from dtls13.connection import Connection
from dtls13.handshake.state import ClientState, ServerState, State
from dtls13.record import ContentType
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair, pki

CLIENT_STATES: list[State] = [
    ClientState.WAIT_SERVER_HELLO,
    ClientState.WAIT_ENCRYPTED_EXTENSIONS,
    ClientState.WAIT_CERTIFICATE_OR_REQUEST,
    ClientState.WAIT_CERTIFICATE,
    ClientState.WAIT_CERTIFICATE_VERIFY,
    ClientState.WAIT_FINISHED,
    ClientState.CONNECTED,
]
SERVER_STATES: list[State] = [
    ServerState.WAIT_CLIENT_HELLO,
    ServerState.WAIT_CLIENT_CERTIFICATE,
    ServerState.WAIT_CLIENT_CERTIFICATE_VERIFY,
    ServerState.WAIT_CLIENT_FINISHED,
    ServerState.CONNECTED,
]
MTUS = (1200, 700, 500, 400, 320, 256)


def handshake_message(msg_type: int, body: bytes, message_seq: int) -> bytes:
    """One whole handshake message with its 12-byte DTLS header (RFC 9147 §5.2)."""
    n = len(body).to_bytes(3, "big")
    return bytes([msg_type]) + n + message_seq.to_bytes(2, "big") + bytes(3) + n + body


def plaintext_record(payload: bytes, content_type: int = 22, seq: int = 0) -> bytes:
    """A DTLSPlaintext record in epoch 0 (RFC 9147 §4)."""
    return (
        bytes([content_type])
        + b"\xfe\xfd"
        + bytes(2)
        + seq.to_bytes(6, "big")
        + len(payload).to_bytes(2, "big")
        + payload
    )


def protected_datagram(
    sender: Connection, epoch: int, payload: bytes, content_type: ContentType
) -> bytes:
    """A record protected with `sender`'s real write keys for `epoch`."""
    with sender._records.datagram_writer(1200) as w:
        w.add(epoch, content_type, payload)
        leases = w.finish()
    data = b"".join(bytes(lease) for lease in leases)
    for lease in leases:
        lease.release()
    return data


def split_records(datagram: bytes) -> list[bytes]:
    """The records of a datagram (no connection IDs), each usable as a datagram of its own."""
    out = []
    i = 0
    while i < len(datagram):
        first = datagram[i]
        if first & 0xE0 == 0x20:  # unified header (RFC 9147 §4)
            seq_len = 2 if first & 0x08 else 1
            if first & 0x04:
                at = i + 1 + seq_len
                end = at + 2 + int.from_bytes(datagram[at : at + 2], "big")
            else:
                end = len(datagram)
        else:
            end = i + 13 + int.from_bytes(datagram[i + 11 : i + 13], "big")
        out.append(datagram[i:end])
        i = end
    return out


def auth_pair(mtu: int, seed: int = 0) -> Pair:
    """A pair whose handshake passes through every state (client auth with a certificate)."""
    leaf = pki().leaf("ec256", cn="dtls13 test client")
    return make_pair(
        seed,
        client={"mtu": mtu, "certificate_chain": leaf.chain_pem, "private_key": leaf.key_pem},
        server={"mtu": mtu, "client_auth": "optional", "cafile": pki().root_pem},
    )


def settled(conn: Connection, target: State) -> bool:
    r = conn._reassembler  # None: let go after the handshake, holding nothing
    return conn.state is target and (r is None or (r.pending == 0 and r.bytes_buffered == 0))


def drive(pair: Pair, side: str, target: State) -> bool:
    """Deliver datagrams one at a time until `side` is in `target` with nothing buffered."""
    conn = pair.client if side == "client" else pair.server
    c, s = pair.client, pair.server
    if side == "server" and settled(conn, target):
        return True
    now = 0.0
    # One message per record, so that records delivered one by one stop between messages.
    c.coalesce_handshake_records = s.coalesce_handshake_records = False
    c.connect(SERVER_ADDR, now)
    queue: deque[tuple[Connection, bytes, object]] = deque()

    def collect() -> None:
        for src, dst, addr in ((c, s, CLIENT_ADDR), (s, c, SERVER_ADDR)):
            for lease, _ in src.datagrams_to_send(now):
                for record in split_records(bytes(lease)):
                    queue.append((dst, record, addr))
                lease.release()

    collect()
    if settled(conn, target):
        return True
    while queue:
        dst, data, addr = queue.popleft()
        now += 0.001
        dst.receive_datagram(data, addr, now)
        if settled(conn, target):
            return True
        collect()
    return False


def reach(side: str, target: State, seed: int = 0) -> Pair | None:
    """A pair with `side` settled in `target`, trying MTUs until one gives a clean cut."""
    for mtu in MTUS:
        pair = auth_pair(mtu, seed)
        if drive(pair, side, target):
            return pair
        pair.close()
    return None
