"""Unprotected (epoch 0) records once keys exist: never authoritative, never fatal.

An off-path sender who knows an association's addresses can forge any DTLSPlaintext
record. Once a connection reads with keys, such records may at most prompt what a
genuine retransmitted hello would (our own retransmission); they never acknowledge
anything, never end the connection and never restart its handshake (RFC 9147 §4.5.2,
§5.11, §7; DESIGN.md §4).
"""

from __future__ import annotations

from typing import Any

import pytest

from dtls13._fast import Buffer
from dtls13.connection import Connection
from dtls13.handshake.constants import HandshakeType
from dtls13.handshake.state import ClientState, ServerState, State
from dtls13.memory import PoolSet
from dtls13.record import ContentType, RecordNumber, push_ack
from tests.support.conn_helpers import (
    handshake_message,
    plaintext_record,
    protected_datagram,
    reach,
)
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, Pair, configs, make_pair, wall_clock


def _ack_payload(numbers: list[tuple[int, int]]) -> bytes:
    buf = Buffer(capacity=2 + 16 * len(numbers))
    push_ack(buf, [RecordNumber(e, s) for e, s in numbers])
    return bytes(buf.data)


SPOOFED_ACK = plaintext_record(_ack_payload([(2, s) for s in range(16)]), ContentType.ack, seq=7)


def test_spoofed_plaintext_ack_does_not_cancel_the_server_flight() -> None:
    """A forged epoch-0 ACK naming (2, 0..15) arrives as the server's flight is lost: the
    server still retransmits it and the handshake completes."""
    pair = make_pair()
    state = {"dropped": 0}

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        if src == SERVER_ADDR and pair.server.stats["retransmissions"] == 0:
            if not state["dropped"]:
                pair.net.inject(CLIENT_ADDR, SERVER_ADDR, SPOOFED_ACK)
            state["dropped"] += 1
            return None  # the genuine first flight is lost
        return data

    pair.net.tamper = tamper
    assert pair.handshake(max_time=30), (pair.terminated("client"), pair.terminated("server"))
    assert state["dropped"] >= 1
    assert pair.server.stats["retransmissions"] >= 1
    assert pair.server.stats["dropped_malformed_plaintext"] >= 1
    assert pair.exchange(b"through", b"anyway")
    pair.close()
    assert pair.pools.in_use == 0


def test_spoofed_plaintext_ack_does_not_cancel_the_client_finished() -> None:
    """A forged epoch-0 ACK naming (2, 0..15) arrives as the client's Finished is lost: the
    client still retransmits it, and the server completes too."""
    pair = make_pair()
    state = {"dropped": 0}

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        client = pair.client
        if (
            src == CLIENT_ADDR
            and client.state is ClientState.CONNECTED
            and client.stats["retransmissions"] == 0
        ):
            if not state["dropped"]:
                pair.net.inject(SERVER_ADDR, CLIENT_ADDR, SPOOFED_ACK)
            state["dropped"] += 1
            return None  # the genuine Finished is lost
        return data

    pair.net.tamper = tamper
    assert pair.handshake(max_time=30), (pair.terminated("client"), pair.terminated("server"))
    assert state["dropped"] >= 1
    assert pair.client.stats["retransmissions"] >= 1
    assert pair.client.stats["dropped_malformed_plaintext"] >= 1
    assert pair.exchange(b"both", b"sides")
    pair.close()
    assert pair.pools.in_use == 0


def test_handshake_epoch_ack_naming_later_epoch_records_acknowledges_nothing() -> None:
    """RFC 9147 §7: during the handshake an ACK is sent in an epoch equal to or higher than
    the records it acknowledges. A KeyUpdate asked for while the client's Finished is
    unacknowledged waits for that ACK (one flight at a time); an epoch-2 ACK naming
    (3, 0..15) acknowledges neither the Finished nor anything in epoch 3, so the KeyUpdate
    stays unsent and the client does not switch keys until the real ACK comes."""
    pair = make_pair()
    crafted: list[bytes] = []
    blocked = {"on": True}

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        # The client's Finished is lost until the test lets it through.
        if src == CLIENT_ADDR and pair.client.state is ClientState.CONNECTED and blocked["on"]:
            return None
        return data

    def until() -> bool:
        if pair.server.state is ServerState.WAIT_CLIENT_FINISHED and not crafted:
            # Made with the server's real epoch-2 keys.
            payload = _ack_payload([(3, s) for s in range(16)])
            crafted.append(protected_datagram(pair.server, 2, payload, ContentType.ack))
        return pair.client.state is ClientState.CONNECTED

    pair.net.tamper = tamper
    pair.client.connect(SERVER_ADDR, 0.0)
    assert pair.net.run(until)
    client = pair.client
    client.key_update()
    for lease, _ in client.datagrams_to_send(pair.net.now):
        lease.release()  # lost as well
    flight = client._flight
    assert flight is not None
    assert all(m.msg_type != HandshakeType.key_update for m in flight.messages)
    acks = client.stats["acks_received"]
    client.receive_datagram(crafted[0], SERVER_ADDR, pair.net.now)
    assert client.stats["acks_received"] == acks + 1  # it authenticated and was read
    assert client._flight is flight and not flight.acknowledged
    assert client.stats["key_updates_sent"] == 0
    assert client._records.write_epoch == 3  # not switched on a wrong acknowledgement
    blocked["on"] = False
    assert pair.net.run(pair.completed, max_time=pair.net.now + 30)
    assert pair.net.run(lambda: client._records.write_epoch == 4, max_time=pair.net.now + 30)
    assert pair.exchange(b"after", b"key update")
    pair.close()
    assert pair.pools.in_use == 0


def test_ack_entries_of_an_epoch_never_sent_are_ignored() -> None:
    """An authenticated ACK naming records of epochs we never wrote changes nothing."""
    pair = make_pair()
    assert pair.handshake()
    server = pair.server
    server.key_update()
    for lease, _ in server.datagrams_to_send(pair.net.now):
        lease.release()
    epoch = pair.client._records.write_epoch
    payload = _ack_payload([(e, s) for e in (5, 9, 2**40) for s in range(4)])
    data = protected_datagram(pair.client, epoch, payload, ContentType.ack)
    server.receive_datagram(data, CLIENT_ADDR, pair.net.now)
    assert not server.closed
    assert server._flight is not None and not server._flight.acknowledged
    assert pair.net.run(lambda: server._records.write_epoch == 4, max_time=pair.net.now + 10)
    pair.close()
    assert pair.pools.in_use == 0


# -- malformed plaintext ------------------------------------------------------------------

# A 15-byte record (a handshake header cut short), an empty ClientHello/ServerHello at the
# next message_seq, and a body that is not a hello at all.
MALFORMED = [
    plaintext_record(b"\x01\x00", seq=900),
    plaintext_record(b"\x02\x00\x00\x05\x00", seq=901),
]


def _malformed_for(conn: Connection) -> list[bytes]:
    seq = conn._next_receive_seq()
    hello = 2 if conn.is_client else 1
    return [
        *MALFORMED,
        plaintext_record(handshake_message(hello, b"", seq), seq=902),
        plaintext_record(handshake_message(hello, b"\xff" * 7, seq), seq=903),
        plaintext_record(handshake_message(hello, b"", 0), seq=904),
        plaintext_record(handshake_message(20, b"\x00" * 3, seq), seq=905),
        plaintext_record(b"\x00", ContentType.ack, seq=906),
        plaintext_record(b"\x02", ContentType.alert, seq=907),
    ]


def _inject_malformed(pair: Pair, side: str) -> Connection:
    conn = pair.client if side == "client" else pair.server
    addr = SERVER_ADDR if side == "client" else CLIENT_ADDR
    state = conn.state
    before = conn.stats["dropped_malformed_plaintext"] + conn.stats["dropped_handshake_fragments"]
    for data in _malformed_for(conn):
        conn.receive_datagram(data, addr, pair.net.now)
        assert not conn.closed, (side, state, data.hex(), conn.terminated)
        assert conn.state is state
    after = conn.stats["dropped_malformed_plaintext"] + conn.stats["dropped_handshake_fragments"]
    assert after > before
    return conn


@pytest.mark.parametrize(
    ("side", "state"),
    [
        ("client", ClientState.WAIT_ENCRYPTED_EXTENSIONS),
        ("client", ClientState.WAIT_CERTIFICATE_OR_REQUEST),
        ("server", ServerState.WAIT_CLIENT_FINISHED),
        ("server", ServerState.WAIT_CLIENT_CERTIFICATE),
    ],
)
def test_malformed_plaintext_mid_handshake_is_dropped(side: str, state: State) -> None:
    pair = reach(side, state)
    assert pair is not None
    _inject_malformed(pair, side)
    assert pair.net.run(pair.completed, max_time=60)
    assert pair.exchange(b"handshake", b"survived")
    pair.close()
    assert pair.pools.in_use == 0


@pytest.mark.parametrize("side", ["client", "server"])
def test_malformed_plaintext_after_the_handshake_is_dropped(side: str) -> None:
    """Epoch 0 stays readable for a while after the handshake (late retransmissions)."""
    pair = make_pair()
    assert pair.handshake()
    conn = pair.client if side == "client" else pair.server
    assert 0 in conn._records.read_epochs()
    _inject_malformed(pair, side)
    assert pair.exchange(b"connection", b"survived")
    pair.close()
    assert pair.pools.in_use == 0


def test_malformed_plaintext_before_the_server_hello_is_dropped() -> None:
    pair = make_pair()
    pair.client.connect(SERVER_ADDR, 0.0)
    for lease, _ in pair.client.datagrams_to_send(0.0):
        lease.release()  # the first ClientHello is lost: the timer brings it back
    _inject_malformed(pair, "client")
    assert pair.net.run(pair.completed, max_time=60)
    pair.close()
    assert pair.pools.in_use == 0


def test_malformed_plaintext_while_waiting_for_the_second_client_hello_is_dropped() -> None:
    pair = make_pair(server={"require_cookie": True})
    pair.client.connect(SERVER_ADDR, 0.0)
    for lease, _ in pair.client.datagrams_to_send(0.0):
        pair.server.receive_datagram(bytes(lease), CLIENT_ADDR, 0.0)
        lease.release()
    assert pair.server.state is ServerState.WAIT_CLIENT_HELLO_AFTER_RETRY
    for lease, _ in pair.server.datagrams_to_send(0.0):
        lease.release()  # the HRR is lost: the client repeats ClientHello1
    _inject_malformed(pair, "server")
    assert pair.net.run(pair.completed, max_time=60)
    pair.close()
    assert pair.pools.in_use == 0


def test_malformed_plaintext_at_a_server_started_by_a_stateless_retry_is_dropped() -> None:
    """A server made for a second ClientHello (first_message_seq=1) that has not got it
    all yet: garbage at message_seq 1 is not its ClientHello2."""
    pair = make_pair()
    server = Connection(
        pair.server.config, pools=pair.pools, peer_address=CLIENT_ADDR, first_message_seq=1
    )
    try:
        before = server.stats["dropped_malformed_plaintext"]
        for data in _malformed_for(server):
            server.receive_datagram(data, CLIENT_ADDR, 0.0)
            assert not server.closed, (data.hex(), server.terminated)
        assert server.stats["dropped_malformed_plaintext"] > before
    finally:
        server.close()
        for lease, _ in server.datagrams_to_send(0.0):
            lease.release()
        pair.close()
    assert pair.pools.in_use == 0


# -- a different ClientHello at a half-open server ------------------------------------------


def _epoch2_garbage(n: int) -> list[bytes]:
    """Records with epoch bits 2 that authenticate under no key (unified header, 16-bit
    sequence number and a length: 0b00101110)."""
    body = bytes(range(40))
    return [b"\x2e" + i.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body for i in range(n)]


def _spoofed_client_hello(pair: Pair) -> list[bytes]:
    spoofer = Connection(pair.client.config, pools=pair.pools)
    spoofer.connect(SERVER_ADDR, pair.net.now)
    out = []
    for lease, _ in spoofer.datagrams_to_send(pair.net.now):
        out.append(lease.tobytes())
        lease.release()
    spoofer.abandon()
    return out


def test_spoofed_garbage_and_client_hello_do_not_restart_a_half_open_server() -> None:
    """Between the server's flight and the client's Finished an off-path sender puts
    epoch-2 garbage and a different ClientHello under the client's address: the server's
    handshake goes on and completes (RFC 9147 §5.11: a new ClientHello from an address with
    an association is acted on only once a cookie exchange proves the address)."""
    pair = make_pair()
    pair.client.connect(SERVER_ADDR, 0.0)
    assert pair.net.run(lambda: pair.server.state is ServerState.WAIT_CLIENT_FINISHED)
    for data in _epoch2_garbage(3) + _spoofed_client_hello(pair):
        pair.net.inject(CLIENT_ADDR, SERVER_ADDR, data)
    assert pair.net.run(pair.completed, max_time=30), (
        pair.terminated("client"),
        pair.terminated("server"),
    )
    assert pair.server.stats["handshake_restarts"] == 0
    assert pair.server._records.drops["auth_failed"] >= 1  # the garbage was dropped
    assert pair.exchange(b"not", b"restarted")
    pair.close()
    assert pair.pools.in_use == 0


def test_spoofed_garbage_and_client_hello_do_not_destroy_a_half_open_endpoint_handshake() -> None:
    """The same through a ServerEndpoint, which hands a ClientHello from the address of a
    half-open association to that association."""
    from dtls13.endpoint import ServerEndpoint
    from tests.support.netsim import SimNetwork

    ccfg, scfg = configs()
    pools = PoolSet()
    net = SimNetwork(1)
    ep = ServerEndpoint(scfg, pools=pools, cookie_policy="never", wall_clock=wall_clock)
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    net.add(SERVER_ADDR, ep)
    net.add(CLIENT_ADDR, client)
    client.connect(SERVER_ADDR, 0.0)

    def server_waits_for_finished() -> bool:
        conn = ep.connections.get(CLIENT_ADDR)
        return conn is not None and conn.state is ServerState.WAIT_CLIENT_FINISHED

    assert net.run(server_waits_for_finished)
    server = ep.connections[CLIENT_ADDR]
    spoofer = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    spoofer.connect(SERVER_ADDR, net.now)
    hello = []
    for lease, _ in spoofer.datagrams_to_send(net.now):
        hello.append(lease.tobytes())
        lease.release()
    spoofer.abandon()
    for data in _epoch2_garbage(3) + hello:
        net.inject(CLIENT_ADDR, SERVER_ADDR, data)
    assert net.run(lambda: server.handshake_complete and client.handshake_complete, max_time=30)
    assert ep.connections[CLIENT_ADDR] is server
    assert server.stats["handshake_restarts"] == 0
    client.close()
    ep.close()
    net.flush()
    net.run(lambda: False, max_time=net.now + 2)
    for lease, _ in ep.datagrams_to_send(net.now):
        lease.release()
    ep.release()
    assert pools.in_use == 0


# -- epoch 0's replay window -----------------------------------------------------------------


@pytest.mark.parametrize(
    "forged",
    [
        plaintext_record(b"\x01\x00", seq=2**40),  # malformed handshake
        plaintext_record(_ack_payload([(0, 0)]), ContentType.ack, seq=2**40),
        plaintext_record(handshake_message(2, b"\xff" * 7, 0), seq=2**40),  # not a hello
    ],
    ids=["malformed", "ack", "undecodable-hello"],
)
def test_forged_plaintext_far_ahead_does_not_poison_the_epoch0_replay_window(
    forged: bytes,
) -> None:
    """Epoch 0's replay window (RFC 9147 §4.5.1) moves only for records the connection took
    (a hello fragment it buffered): one forged record numbered 2^40 that it dropped must
    not make the genuine ServerHello, numbered from 0, a "replay"."""
    pair = make_pair()
    pair.client.connect(SERVER_ADDR, 0.0)
    pair.client.receive_datagram(forged, SERVER_ADDR, 0.0)
    assert not pair.client.closed
    assert pair.net.run(pair.completed, max_time=30), dict(pair.client._records.drops)
    assert pair.client._records.drops["replay"] == 0
    pair.close()
    assert pair.pools.in_use == 0


def test_a_copy_of_a_taken_hello_record_is_still_a_replay() -> None:
    """What the window is for: a second copy of the very record that brought a hello."""
    pair = make_pair()
    pair.client.connect(SERVER_ADDR, 0.0)
    hello = []
    for lease, _ in pair.client.datagrams_to_send(0.0):
        hello.append(lease.tobytes())
        lease.release()
    for data in hello:
        pair.server.receive_datagram(data, CLIENT_ADDR, 0.0)
    for lease, _ in pair.server.datagrams_to_send(0.0):
        lease.release()
    before = pair.server._records.drops["replay"]
    pair.server.receive_datagram(hello[0], CLIENT_ADDR, 0.01)
    assert pair.server._records.drops["replay"] == before + 1
    pair.close()
    assert pair.pools.in_use == 0


def test_spoofed_plaintext_ack_does_not_cancel_the_client_hello() -> None:
    """Before any keys exist, a forged epoch-0 ACK of the client's ClientHello record
    arrives as that ClientHello is lost: the client still retransmits it (the server's
    first flight is what acknowledges a ClientHello) and the handshake completes."""
    pair = make_pair()
    forged = plaintext_record(_ack_payload([(0, 0)]), ContentType.ack, seq=3)
    state = {"dropped": 0}

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        if src == CLIENT_ADDR and not state["dropped"]:
            state["dropped"] = 1
            pair.net.inject(SERVER_ADDR, CLIENT_ADDR, forged)
            return None  # the genuine ClientHello is lost
        return data

    pair.net.tamper = tamper
    assert pair.handshake(max_time=30), (pair.terminated("client"), pair.terminated("server"))
    assert pair.client.stats["retransmissions"] >= 1
    assert pair.client.stats["dropped_malformed_plaintext"] >= 1
    pair.close()
    assert pair.pools.in_use == 0
