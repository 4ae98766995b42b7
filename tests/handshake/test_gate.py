"""The pre-connection gate: stateless cookies and bounded assembly of fragmented ClientHellos."""

from __future__ import annotations

import os
from typing import Any

import pytest

from dtls13.connection import Connection
from dtls13.handshake.gate import HelloGate, Verdict
from dtls13.memory import Lease, PoolSet
from tests.support.dtls_pair import SERVER_ADDR, configs, wall_clock
from tests.support.netsim import SimNetwork


class GatedServer:
    """A minimal server endpoint: the gate for strangers, a connection per known address."""

    def __init__(self, gate: HelloGate, pools: PoolSet) -> None:
        self.gate = gate
        self.pools = pools
        self.conns: dict[Any, Connection] = {}
        self.replies: list[tuple[Lease, Any]] = []

    def receive_datagram(self, data: Any, addr: Any, now: float) -> None:
        conn = self.conns.get(addr)
        if conn is not None:
            conn.receive_datagram(data, addr, now)
            return
        result = self.gate.receive_untrusted(data, addr, now)
        if result.verdict is Verdict.REPLY:
            assert result.reply is not None
            self.replies += [(lease, addr) for lease in result.reply]
        elif result.verdict is Verdict.ACCEPT:
            assert result.datagram is not None
            conn = Connection(
                self.gate.config,
                pools=self.pools,
                peer_address=addr,
                wall_clock=wall_clock,
                first_message_seq=result.first_message_seq,
            )
            self.conns[addr] = conn
            conn.receive_datagram(result.datagram, addr, now)

    def datagrams_to_send(self, now: float) -> list[tuple[Any, Any]]:
        out, self.replies = self.replies, []
        for conn in self.conns.values():
            out += conn.datagrams_to_send(now)
        return out

    def get_timer(self) -> float | None:
        timers = [t for c in self.conns.values() if (t := c.get_timer()) is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        for conn in self.conns.values():
            if (t := conn.get_timer()) is not None and t <= now:
                conn.handle_timer(now)

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        for lease, _ in self.datagrams_to_send(0.0):
            lease.release()
        self.gate.close()


def _setup(**server: Any) -> tuple[SimNetwork, Connection, GatedServer, PoolSet]:
    ccfg, scfg = configs(
        client={"groups": ["X25519MLKEM768", "x25519"], "key_share_groups": ["X25519MLKEM768"]},
        server={"require_cookie": True, **server},
    )
    pools = PoolSet()
    net = SimNetwork(1)
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    server_ep = GatedServer(HelloGate(scfg, pools), pools)
    net.add(("10.0.0.1", 5000), client)
    net.add(SERVER_ADDR, server_ep)
    return net, client, server_ep, pools


def test_fragmented_pq_client_hellos_pass_the_stateless_gate() -> None:
    net, client, server, pools = _setup()
    client.connect(SERVER_ADDR, 0.0)
    assert net.run(
        lambda: bool(server.conns) and server.conns[("10.0.0.1", 5000)].handshake_complete
    )
    gate = server.gate
    assert gate.counters["hello_retry_sent"] == 1
    assert gate.counters["accepted"] == 1
    assert gate.counters["partials_started"] == 2  # ClientHello1 and 2 both came in fragments
    assert gate.partials == 0 and gate.bytes_held == 0
    client.close()
    server.close()
    net.flush()
    assert pools.in_use == 0


def test_cookieless_hello_flood_keeps_no_state() -> None:
    _, scfg = configs(server={"require_cookie": True})
    pools = PoolSet()
    gate = HelloGate(scfg, pools)
    hello = _first_client_hello()
    for i in range(200):
        result = gate.receive_untrusted(hello, (f"127.0.0.{i + 2}", 4000), 0.0)
        assert result.verdict is Verdict.REPLY and result.reply is not None
        # Amplification (RFC 9147 §5.1): the reply is no larger than what came in.
        assert sum(len(d) for d in result.reply) <= len(hello)
        for lease in result.reply:
            lease.release()
    assert gate.counters["hello_retry_sent"] == 200
    assert gate.partials == 0 and gate.bytes_held == 0
    gate.close()
    assert pools.in_use == 0


def test_flood_of_first_fragments_stays_inside_the_budget_and_expires() -> None:
    _, scfg = configs(server={"require_cookie": True})
    pools = PoolSet()
    gate = HelloGate(scfg, pools, per_source_bytes=4096, total_bytes=64 * 1024, max_sources=100)
    fragment = _fragment_of(length=3000, offset=0, body=os.urandom(500))
    for i in range(200):
        result = gate.receive_untrusted(fragment, (f"127.0.1.{i % 250}", 4000 + i), 1.0)
        assert result.verdict is Verdict.DROP
        assert gate.bytes_held <= 64 * 1024
    assert gate.partials <= 100
    # A full gate makes room by evicting the partial that waited longest.
    assert gate.counters["partials_evicted"] >= 100
    gate.expire(10.0)
    assert gate.partials == 0 and gate.bytes_held == 0
    c = gate.counters
    assert c["partials_expired"] + c["partials_evicted"] == c["partials_started"]
    gate.close()
    assert pools.in_use == 0


def test_one_source_cannot_exceed_its_own_budget() -> None:
    _, scfg = configs()
    pools = PoolSet()
    gate = HelloGate(scfg, pools, per_source_bytes=2048)
    addr = ("127.0.0.9", 1)
    # Memory follows the bytes received: a fragment of a large ClientHello is taken...
    first = _fragment_of(length=6000, offset=0, body=b"x" * 2000)
    assert gate.receive_untrusted(first, addr, 0.0).verdict is Verdict.DROP
    assert gate.partials == 1 and gate.bytes_held <= 2048
    # ...but not past the source's budget (the partial stays as it was).
    more = _fragment_of(length=6000, offset=2000, body=b"x" * 1000)
    assert gate.receive_untrusted(more, addr, 0.0).verdict is Verdict.DROP
    assert gate.counters["partials_refused"] == 1 and gate.partials == 1
    # A first fragment that alone exceeds the budget keeps nothing.
    big = _fragment_of(length=6000, offset=0, body=b"x" * 3000)
    assert gate.receive_untrusted(big, ("127.0.0.10", 1), 0.0).verdict is Verdict.DROP
    assert gate.counters["partials_refused"] == 2 and gate.partials == 1
    gate.close()
    assert pools.in_use == 0


def test_garbage_is_dropped_and_a_forged_cookie_gets_illegal_parameter() -> None:
    _, scfg = configs(server={"require_cookie": True})
    pools = PoolSet()
    gate = HelloGate(scfg, pools)
    for junk in (
        b"",
        b"\x17\xfe\xfd" + bytes(10),
        os.urandom(60),
        b"\x16\xfe\xfd" + bytes(8) + b"\x00\x05abc",
    ):
        assert gate.receive_untrusted(junk, ("127.0.0.3", 1), 0.0).verdict is Verdict.DROP
    assert gate.counters["malformed"] + gate.counters["not_client_hello"] == 4
    # A second ClientHello whose cookie this server never issued.
    forged = _client_hello_with_cookie(b"\x00" * 60, message_seq=1)
    result = gate.receive_untrusted(forged, ("127.0.0.3", 1), 0.0)
    # RFC 9147 §5.1: an invalid cookie gets illegal_parameter, and nothing is kept.
    assert result.verdict is Verdict.REPLY and result.reply is not None
    (alert,) = result.reply
    assert alert.tobytes()[0] == 21 and alert.tobytes()[-2:] == bytes([2, 47])
    assert len(alert) < len(forged)
    alert.release()
    assert gate.counters["bad_cookie"] == 1
    assert gate.partials == 0
    gate.close()
    assert pools.in_use == 0


# -- helpers ---------------------------------------------------------------------------


def _first_client_hello() -> bytes:
    ccfg, _ = configs()
    client = Connection(ccfg, pools=PoolSet(), wall_clock=wall_clock)
    client.connect(SERVER_ADDR, 0.0)
    (datagram,) = client.datagrams_to_send(0.0)
    data = datagram[0].tobytes()
    datagram[0].release()
    client.close()
    return data


def _fragment_of(length: int, offset: int, body: bytes, message_seq: int = 0) -> bytes:
    from dtls13.handshake.flights import handshake_fragment

    frag = handshake_fragment(1, length, message_seq, offset, body)
    return b"\x16\xfe\xfd" + bytes(8) + len(frag).to_bytes(2, "big") + frag


def _client_hello_with_cookie(cookie: bytes, message_seq: int) -> bytes:
    from dtls13._fast import Buffer
    from dtls13.handshake import extensions as ext
    from dtls13.handshake import messages as msgs
    from dtls13.handshake.constants import ExtensionType

    ch = msgs.ClientHello(
        random=bytes(32),
        cipher_suites=(0x1301,),
        extensions=(
            ext.make_extension(
                ExtensionType.supported_versions, ext.push_supported_versions_client, [0xFEFC]
            ),
            ext.make_extension(ExtensionType.cookie, ext.push_cookie, cookie),
        ),
    )
    buf = Buffer()
    msgs.push_client_hello(buf, ch)
    body = buf.data
    return _fragment_of(len(body), 0, body, message_seq)


def test_client_hello_followed_by_zero_rtt_records_reaches_the_connection_whole() -> None:
    _, scfg = configs()
    pools = PoolSet()
    gate = HelloGate(scfg, pools)
    hello = _first_client_hello()
    early = b"\x2e\x00\x01" + bytes(30)  # a unified-header (protected) record after it
    result = gate.receive_untrusted(hello + early, ("127.0.0.5", 9), 0.0)
    assert result.verdict is Verdict.ACCEPT and result.datagram == hello + early
    # Protected records alone from a stranger are not a ClientHello.
    assert gate.receive_untrusted(early, ("127.0.0.5", 9), 0.0).verdict is Verdict.DROP
    gate.close()
    assert pools.in_use == 0


# -- partial first ClientHellos: fair under a flood, sized by the bytes received ---------


@pytest.mark.parametrize("burst", [256, 1500])  # 1500: more sources than the gate holds
def test_fragmented_client_hello_completes_during_a_flood_of_spoofed_first_fragments(
    burst: int,
) -> None:
    ccfg, scfg = configs(
        client={"groups": ["X25519MLKEM768", "x25519"], "key_share_groups": ["X25519MLKEM768"]},
        server={"require_cookie": True},
    )
    pools = PoolSet()
    net = SimNetwork(3)
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    server = GatedServer(HelloGate(scfg, pools), pools)
    net.add(("10.0.0.1", 5000), client)
    net.add(SERVER_ADDR, server)
    spoof = _fragment_of(length=4000, offset=0, body=os.urandom(64))
    try:
        # A burst of 256 spoofed first fragments from as many addresses (the attacker
        # repeats it every 5 seconds, the gate's timeout), just before the client starts.
        for i in range(burst):
            net.inject((f"192.0.{2 + i // 250}.{i % 250}", 7000), SERVER_ADDR, spoof)
        net.step()
        client.connect(SERVER_ADDR, net.now)
        done = net.run(
            lambda: bool(server.conns) and server.conns[("10.0.0.1", 5000)].handshake_complete,
            max_time=2.0,
        )
        assert done, server.gate.counters
        # Past the gate's 1024 sources, the oldest spoofed partials made room.
        assert (server.gate.counters["partials_evicted"] > 0) == (burst > 1024)
    finally:
        client.close()
        server.close()
        net.flush()


def test_flood_from_one_source_evicts_that_source_first() -> None:
    _, scfg = configs(server={"require_cookie": True})
    pools = PoolSet()
    gate = HelloGate(scfg, pools, max_sources=8)
    try:
        first = _fragment_of(length=3000, offset=0, body=b"a" * 1000)
        # A genuine client's first fragment, then a flood from one host on many ports.
        gate.receive_untrusted(first, ("198.51.100.7", 1), 0.0)
        for port in range(100):
            gate.receive_untrusted(first, ("203.0.113.9", 1000 + port), 0.001)
        assert gate.partials <= 8
        # The genuine client's partial is still there: its next fragments complete it.
        second = _fragment_of(length=3000, offset=1000, body=b"a" * 1000)
        gate.receive_untrusted(second, ("198.51.100.7", 1), 0.002)
        third = _fragment_of(length=3000, offset=2000, body=b"a" * 1000)
        result = gate.receive_untrusted(third, ("198.51.100.7", 1), 0.003)
        # The (made-up) ClientHello is complete: it reached the decoder.
        assert gate.counters["malformed"] == 1, gate.counters
        assert result.verdict is Verdict.DROP
    finally:
        gate.close()
    assert pools.in_use == 0


def test_client_hello_between_4_and_8_kib_passes_the_gate_in_fragments() -> None:
    groups = ["X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024", "x25519"]
    ccfg, scfg = configs(
        client={"groups": groups, "key_share_groups": groups},
        server={"require_cookie": True},
    )
    pools = PoolSet()
    net = SimNetwork(1)
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    server = GatedServer(HelloGate(scfg, pools), pools)
    net.add(("10.0.0.1", 5000), client)
    net.add(SERVER_ADDR, server)
    lengths = []

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        if src == ("10.0.0.1", 5000) and data[0] == 22:
            lengths.append(int.from_bytes(data[14:17], "big"))
        return data

    net.tamper = tamper
    try:
        client.connect(SERVER_ADDR, 0.0)
        assert net.run(
            lambda: bool(server.conns) and server.conns[("10.0.0.1", 5000)].handshake_complete,
            max_time=30.0,
        ), server.gate.counters
        assert 4096 < lengths[0] <= 8192
        assert server.gate.counters["partials_refused"] == 0
    finally:
        client.close()
        server.close()
        net.flush()
    assert pools.in_use == 0


def test_partial_client_hello_holds_memory_in_proportion_to_what_arrived() -> None:
    _, scfg = configs()
    pools = PoolSet()
    gate = HelloGate(scfg, pools)
    try:
        small = _fragment_of(length=8000, offset=0, body=b"x" * 40)
        gate.receive_untrusted(small, ("127.0.0.9", 1), 0.0)
        assert gate.partials == 1 and gate.bytes_held <= 512
    finally:
        gate.close()
    assert pools.in_use == 0


def test_a_client_in_the_middle_of_its_client_hello_is_never_evicted() -> None:
    _, scfg = configs(server={"require_cookie": True})
    pools = PoolSet()
    gate = HelloGate(scfg, pools, max_sources=4)
    piece = [_fragment_of(length=3000, offset=o, body=b"a" * 1000) for o in (0, 1000, 2000)]
    genuine = ("198.51.100.7", 1)
    try:
        gate.receive_untrusted(piece[0], genuine, 0.0)
        for i in range(3):  # spoofs that also look like progress
            for p in piece[:2]:
                gate.receive_untrusted(p, (f"203.0.113.{i}", 1), 0.001)
        gate.receive_untrusted(piece[1], genuine, 0.002)
        # Full of partials that progressed within the last second: a newcomer is refused.
        gate.receive_untrusted(piece[0], ("203.0.113.99", 1), 0.003)
        assert gate.counters["partials_refused"] == 1 and gate.counters["partials_evicted"] == 0
        # A second later the spoofs went quiet: they make room, the genuine client stays.
        gate.receive_untrusted(piece[0], ("203.0.113.99", 1), 1.5)
        assert gate.counters["partials_evicted"] == 1
        gate.receive_untrusted(piece[2], genuine, 1.6)
        assert gate.counters["malformed"] == 1  # the made-up ClientHello was complete
    finally:
        gate.close()
    assert pools.in_use == 0
