"""An off-path attacker knows both addresses but sees none of the traffic. Whatever it
forges, from the client's address to the server or from the server's address to the
client, at any moment of a handshake, the genuine handshake completes, data flows both
ways, nothing escapes the library and every pool comes back to zero.

What the attacker may forge is limited to what DTLS 1.3 can defend against. Before the
client holds the server's handshake keys nothing it receives is authenticated: a forged
ServerHello, HelloRetryRequest, alert or out-of-place handshake message that wins the
race is taken as genuine by every implementation, so until then the client is sent only
what it can tell apart (noise, records it has no keys for, ACKs, change_cipher_spec and
application data in epoch 0). Likewise a well-formed ClientHello from the client's
address that reaches a server holding nothing for that address yet gets a genuine
HelloRetryRequest the client cannot tell from its own. Everything else (noise, records
of every content type in every epoch, handshake fragments of every type, ACKs naming
plausible record numbers, alerts) is fair game from the first datagram on, as are bursts
of padded ClientHellos from other addresses, which under a small memory budget bring on
the endpoint's memory emergency.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtls13.connection import Connection
from dtls13.endpoint import DoSProtectionConfig, ServerEndpoint
from dtls13.events import DataReceived
from dtls13.handshake.state import ClientState
from dtls13.memory import PoolSet
from tests.support.conn_helpers import handshake_message, plaintext_record
from tests.support.dtls_pair import SERVER_ADDR, configs, shutdown_world, wall_clock
from tests.support.netsim import SimNetwork

CLIENT = ("10.9.0.1", 50000)
KINDS = (
    "noise",
    "alert",
    "ack",
    "change_cipher_spec",
    "application_data",
    "handshake_fragment",
    "client_hello",
    "unified_header",
    "dtls12_ciphertext",
    "several",
    "padded_hellos_elsewhere",
)
# Before these states the client has no key that could tell a forgery from the server.
CLIENT_UNAUTHENTICATED = (
    ClientState.START,
    ClientState.WAIT_SERVER_HELLO,
    ClientState.WAIT_SERVER_HELLO_AFTER_RETRY,
)

TELL_APART = {
    "noise",
    "ack",
    "change_cipher_spec",
    "application_data",
    "unified_header",
    "dtls12_ciphertext",
    "padded_hellos_elsewhere",
}

forgery = st.tuples(
    st.integers(0, 14),  # injected once this many genuine datagrams were delivered
    st.booleans(),  # True: to the server, from the client's address
    st.sampled_from(KINDS),
    st.integers(0, 2**32 - 1),  # the forgery's own randomness
)


def _record_numbers(rng: random.Random) -> bytes:
    """An ACK body naming record numbers a genuine handshake plausibly uses (§7)."""
    numbers = [(rng.choice((0, 0, 2, 2, 3)), rng.randrange(8)) for _ in range(rng.randrange(1, 5))]
    body = b"".join(e.to_bytes(8, "big") + s.to_bytes(8, "big") for e, s in numbers)
    return len(body).to_bytes(2, "big") + body


def _client_hello(ccfg: Any, pools: PoolSet, *, pad: bool = False) -> bytes:
    if pad:
        ccfg = dataclasses.replace(ccfg, pad_client_hello=True)
    spoofer = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    spoofer.connect(SERVER_ADDR, 0.0)
    out = b""
    for lease, _ in spoofer.datagrams_to_send(0.0):
        out += lease.tobytes()
        lease.release()
    spoofer.abandon()
    return out


def _forge(kind: str, rng: random.Random, ccfg: Any, pools: PoolSet) -> bytes:
    seq = rng.choice((rng.randrange(64), rng.randrange(2**48)))
    if kind == "noise":
        return rng.randbytes(rng.randrange(1, 300))
    if kind == "alert":
        level = rng.choice((1, 2, rng.randrange(256)))
        return plaintext_record(bytes([level, rng.randrange(256)]), 21, seq)
    if kind == "ack":
        return plaintext_record(_record_numbers(rng), 26, seq)
    if kind == "change_cipher_spec":
        return plaintext_record(b"\x01", 20, seq)
    if kind == "application_data":
        return plaintext_record(rng.randbytes(rng.randrange(1, 100)), 23, seq)
    if kind == "handshake_fragment":
        msg_type = rng.choice((1, 2, 4, 5, 8, 11, 13, 15, 20, 24, rng.randrange(256)))
        body = rng.randbytes(rng.randrange(0, 120))
        message = bytearray(handshake_message(msg_type, body, rng.randrange(6)))
        if rng.random() < 0.5:  # a fragment of a longer message
            total = len(body) + rng.randrange(1, 3000)
            message[1:4] = total.to_bytes(3, "big")
            message[6:9] = rng.randrange(total - len(body) + 1).to_bytes(3, "big")
        return plaintext_record(bytes(message), 22, seq)
    if kind == "client_hello":
        return _client_hello(ccfg, pools)
    if kind == "padded_hellos_elsewhere":  # big enough to be answered without a cookie
        return _client_hello(ccfg, pools, pad=True)
    if kind == "unified_header":  # 0b001CSLEE (§4): any flags, a plausible epoch
        first = 0x20 | rng.randrange(32)
        header = bytes([first])
        if first & 0x10:
            header += rng.randbytes(rng.choice((4, 8)))
        header += rng.randbytes(2 if first & 0x08 else 1)
        body = rng.randbytes(rng.randrange(17, 120))
        if first & 0x04:
            header += len(body).to_bytes(2, "big")
        return header + body
    if kind == "dtls12_ciphertext":  # the full header with an epoch above 0
        body = rng.randbytes(rng.randrange(17, 120))
        epoch = rng.randrange(1, 5)
        return (
            bytes([rng.choice((21, 22, 23, 26))])
            + b"\xfe\xfd"
            + epoch.to_bytes(2, "big")
            + seq.to_bytes(6, "big")
            + len(body).to_bytes(2, "big")
            + body
        )
    parts = [_forge(rng.choice(KINDS[1:6]), rng, ccfg, pools) for _ in range(rng.randrange(2, 5))]
    return b"".join(parts)


def _applicable(kind: str, to_server: bool, client: Connection, ep: ServerEndpoint) -> bool:
    if to_server:
        # A ClientHello that reaches a server holding nothing for the address is answered
        # as the genuine one would be; once the server holds the association it is not.
        return kind != "client_hello" or CLIENT in ep.connections
    # Before it holds the server's keys the client cannot authenticate a ServerHello, a
    # HelloRetryRequest or an alert; the rest it can still tell apart and drop.
    return client.state not in CLIENT_UNAUTHENTICATED or kind in TELL_APART


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    forgeries=st.lists(forgery, max_size=12),
    # Genuine datagrams lost on the way, by their place in the order sent: a few, so that a
    # handshake that fails was made to fail (random loss alone can outlast every
    # retransmission), and forged ACKs meet flights that need retransmitting.
    lost=st.sets(st.integers(0, 15), max_size=3),
    cookie_policy=st.sampled_from(("under_load", "always")),
    cid=st.booleans(),
    budget=st.sampled_from((None, 30_000)),
    seed=st.integers(0, 1000),
)
def test_off_path_forgeries_never_stop_a_genuine_handshake_or_its_data(
    forgeries: list[tuple[int, bool, str, int]],
    lost: set[int],
    cookie_policy: str,
    cid: bool,
    budget: int | None,
    seed: int,
) -> None:
    both = {"connection_id": cid}
    ccfg, scfg = configs(client=both, server=both)
    pools = PoolSet()
    net = SimNetwork(seed)
    sent = iter(range(1 << 30))
    net.tamper = lambda src, dst, data: None if next(sent) in lost else data
    # A small memory budget: spoofed hellos elsewhere can bring on a memory emergency.
    dos = DoSProtectionConfig() if budget is None else DoSProtectionConfig(max_total_memory=budget)
    ep = ServerEndpoint(
        scfg, pools=pools, dos=dos, cookie_policy=cookie_policy, wall_clock=wall_clock
    )
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    net.add(SERVER_ADDR, ep)
    net.add(CLIENT, client)
    pending = sorted(forgeries)
    client.connect(SERVER_ADDR, 0.0)

    def inject_due() -> None:
        while pending and pending[0][0] <= net.stats.delivered:
            _, to_server, kind, salt = pending.pop(0)
            if not _applicable(kind, to_server, client, ep):
                continue
            data = _forge(kind, random.Random(salt), ccfg, pools)
            if kind == "padded_hellos_elsewhere":  # from addresses nobody answers at
                for i in range(1 + salt % 8):
                    net.inject((f"10.8.{salt % 250}.{i + 1}", 4000), SERVER_ADDR, data)
            elif to_server:
                net.inject(CLIENT, SERVER_ADDR, data)
            else:
                net.inject(SERVER_ADDR, CLIENT, data)

    def established() -> bool:
        inject_due()
        server = ep.connections.get(CLIENT)
        return client.handshake_complete and server is not None and server.handshake_complete

    assert net.run(established, max_time=120), (client.state, client.closed)
    server = ep.connections[CLIENT]
    got: list[bytes] = []

    def echoed() -> bool:
        inject_due()
        while (ev := server.next_event()) is not None:
            if isinstance(ev, DataReceived):
                server.send(ev.data)
        while (ev := client.next_event()) is not None:
            if isinstance(ev, DataReceived):
                got.append(ev.data)
        return b"ping" in got

    for _ in range(30):  # application data is not retransmitted: ask again when lost
        client.send(b"ping")
        if net.run(echoed, max_time=net.now + 1):
            break
    assert b"ping" in got
    assert not client.closed and not server.closed
    shutdown_world(net, ep, [client])
    assert pools.in_use == 0
