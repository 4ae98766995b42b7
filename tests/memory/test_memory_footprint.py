"""Memory per connection and under a cookie flood.

An idle established connection holds no handshake-only state (transcript, handshake and
master secrets, hellos, key shares, epoch-2 write keys), and what comes after the handshake
still works without it: NewSessionTicket and resumption, KeyUpdate, a client Finished
repeated because the server's ACK was lost. A flood of cookie-less ClientHellos leaves no
per-peer state and the pools at zero.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dtls13 import connection as connection_module
from dtls13.connection import Connection
from dtls13.endpoint import DoSProtectionConfig, ServerEndpoint
from dtls13.events import HandshakeCompleted, KeyUpdated, NewSessionTicketReceived
from dtls13.handshake import messages as msgs
from dtls13.handshake import work as handshake_work
from dtls13.handshake.client import ClientHandshake, ClientWork
from dtls13.handshake.ech_server import FINISHED
from dtls13.handshake.server import ServerHandshake, ServerWork
from dtls13.memory import PoolSet
from dtls13.record import DROP_REASONS
from dtls13.record.layer import NO_DROPS
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, Pair, configs, make_pair, wall_clock


def assert_no_handshake_state(conn: Connection) -> None:
    assert conn.handshake_complete
    hs = conn.handshake
    # The handshake's working state (transcript, key schedule, handshake secrets, randoms,
    # hellos, cookie, ECH keys) is gone: the role's shared, spent one stands in for it.
    work = hs._work
    assert work is type(hs).SPENT_WORK
    assert work.transcript is handshake_work.SPENT_TRANSCRIPT and work.schedule is None
    assert work.c_hs == work.s_hs == work.random == work.client_random == b""
    assert work.scratch is None and work.keylog is None and not hs.early_data_open
    assert work.cert_request is None and work.hrr_cookie is None
    if isinstance(hs, ClientHandshake):
        assert isinstance(work, ClientWork)
        assert not work.psk_offers and not work.key_shares and work.client_hello is None
        assert work.ech is None and work.ech_extension is None
    else:
        assert isinstance(hs, ServerHandshake)
        assert isinstance(work, ServerWork)
        assert not hs.hello_bodies and work.client_hello is None and work.ech is FINISHED
    try:  # shared by every finished handshake of the role: nothing writes to it
        work.random = b"x"
    except AttributeError:
        pass
    else:
        raise AssertionError("the spent working state took a write")
    assert work.credential is None and work.psk_identity is None and work.local_cid is None
    assert hs._out is handshake_work.NO_OUTPUT  # no last message bodies or events kept
    assert conn._flight is None  # every flight acknowledged
    assert conn._records.write_epochs() == [conn._records.write_epoch]
    assert 2 not in conn._records.read_epochs()
    # What stays: the current traffic secrets.
    assert hs.read_secret and hs.write_secret
    assert conn._reassembler is None and conn._idle_reassembly is not None
    assert conn._events is connection_module._NO_EVENTS  # drained: no deque of its own
    # Every attribute has a slot (a new one belongs in Connection.__slots__).
    assert vars(conn) == {} and vars(hs) == {}


def _settle(pair: Pair, seconds: float = 5.0) -> None:
    pair.net.run(lambda: False, max_time=pair.net.now + seconds)
    pair.drain()


def test_idle_connection_keeps_no_handshake_state_and_post_handshake_works() -> None:
    cfgs = configs()
    pair = make_pair(cfgs=cfgs)
    assert pair.handshake()
    _settle(pair)
    ticket = next(e for e in pair.client_events if isinstance(e, NewSessionTicketReceived))
    assert_no_handshake_state(pair.client)
    assert_no_handshake_state(pair.server)
    assert pair.client.handshake.resumption_secret  # tickets still need it
    # The public API still answers from what is kept.
    done = next(e for e in pair.client_events if isinstance(e, HandshakeCompleted))
    assert pair.client.peer_certificates == done.peer_certificates != ()
    assert pair.exchange(b"ping", b"pong")
    # KeyUpdate in both directions.
    pair.client.key_update(request_peer=True)
    assert pair.net.run(
        lambda: (
            any(isinstance(e, KeyUpdated) and e.sending for e in pair.server_events)
            or (pair.drain() is None and False)
        ),
        max_time=pair.net.now + 10,
    )
    _settle(pair)
    assert pair.client._records.write_epoch == 4 and pair.server._records.write_epoch == 4
    assert pair.exchange(b"after update c", b"after update s")
    pair.close()
    assert pair.pools.in_use == 0
    # The ticket resumes.
    resumed = make_pair(1, cfgs=(dataclasses.replace(cfgs[0], session=ticket.session), cfgs[1]))
    assert resumed.handshake()
    resumed.drain()
    assert next(e for e in resumed.client_events if isinstance(e, HandshakeCompleted)).resumed
    _settle(resumed)
    assert_no_handshake_state(resumed.client)
    assert_no_handshake_state(resumed.server)
    assert resumed.exchange(b"resumed c", b"resumed s")
    resumed.close()
    assert resumed.pools.in_use == 0


def test_lost_ack_of_the_client_finished_is_answered_after_the_state_is_dropped() -> None:
    pair = make_pair(3)
    dropped: list[bytes] = []

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        # Everything the server sends right after it completed (the ACK of the client's
        # final flight, the NewSessionTicket) is lost once.
        if src == SERVER_ADDR and pair.server.handshake_complete and len(dropped) < 2:
            dropped.append(data)
            return None
        return data

    pair.net.tamper = tamper
    assert pair.handshake()
    _settle(pair, 10.0)
    assert len(dropped) == 2
    # The client repeated its Finished (epoch 2): the server, with its epoch-2 keys
    # gone, repeated its ACK, so the client's flight is acknowledged.
    assert pair.client.stats["retransmissions"] >= 1
    assert pair.server._records.drops["retired_epoch"] >= 1
    assert pair.server.stats["acks_sent"] >= 2
    assert any(isinstance(e, NewSessionTicketReceived) for e in pair.client_events)
    assert_no_handshake_state(pair.client)
    assert_no_handshake_state(pair.server)
    assert pair.exchange(b"c", b"s")
    pair.close()
    assert pair.pools.in_use == 0


def test_lossy_handshakes_end_without_handshake_state() -> None:
    from tests.support.netsim import Impairments

    for seed in range(12):
        pair = make_pair(seed, Impairments(loss=0.25, reorder=0.2, duplicate=0.1), cache=True)
        assert pair.handshake(max_time=600), seed
        _settle(pair, 120.0)
        assert_no_handshake_state(pair.client)
        assert_no_handshake_state(pair.server)
        assert pair.exchange(b"c%d" % seed, b"s%d" % seed), seed
        pair.close()
        assert pair.pools.in_use == 0


def _client_hello() -> bytes:
    ccfg, _ = configs()
    client = Connection(ccfg, pools=PoolSet(), wall_clock=wall_clock)
    client.connect(SERVER_ADDR, 0.0)
    (datagram,) = client.datagrams_to_send(0.0)
    data = datagram[0].tobytes()
    datagram[0].release()
    client.close()
    for lease, _ in client.datagrams_to_send(0.0):
        lease.release()
    return data


def test_cookie_flood_leaves_no_per_peer_state_and_pools_at_zero() -> None:
    _, scfg = configs()
    pools = PoolSet()
    endpoint = ServerEndpoint(scfg, pools=pools, cookie_policy="always")
    hello = _client_hello()
    sources = [(f"127.0.{h // 250}.{2 + h % 250}", 4000 + p) for h in range(500) for p in range(4)]
    now = 100.0
    answered = 0

    def send_replies() -> None:
        # As a socket loop would: replies are sent (and released) as they come.
        nonlocal answered
        for lease, _ in endpoint.datagrams_to_send(now):
            data = bytes(lease)
            lease.release()
            # One plaintext handshake record holding a HelloRetryRequest with a cookie.
            assert data[0] == 22 and data[13] == 2
            assert data[27 : 27 + 32] == msgs.HELLO_RETRY_REQUEST_RANDOM
            assert len(data) <= len(hello)  # no amplification
            answered += 1

    for i, addr in enumerate(sources):
        assert endpoint.receive_datagram(hello, addr, now + i * 1e-4) is None
        if i % 100 == 99:
            send_replies()
    send_replies()
    assert answered == len(sources)
    stats = endpoint.statistics()
    assert stats.connections == 0 and stats.half_open == 0 and stats.gate_partials == 0
    assert stats.gate["hello_retry_sent"] == len(sources)  # type: ignore[index]
    assert stats.memory_in_use == 0 and pools.in_use == 0
    assert not endpoint.connections and not endpoint.debug_state().half_open
    assert not endpoint.connections.per_host  # type: ignore[attr-defined]
    # Per-source rate buckets are forgotten once they would have refilled anyway.
    assert stats.tracked_sources == 500
    endpoint.receive_datagram(hello, CLIENT_ADDR, now + 60.0)
    for lease, _ in endpoint.datagrams_to_send(now + 60.0):
        lease.release()
    assert endpoint.statistics().tracked_sources == 1
    endpoint.close()
    endpoint.release()
    assert pools.in_use == 0


def test_hrr_from_the_cached_prefix_is_the_message_codec_output() -> None:
    from dtls13.handshake.flights import handshake_fragment
    from dtls13.handshake.gate import HelloGate
    from dtls13.handshake.negotiation import hello_retry_request

    _, scfg = configs()
    pools = PoolSet()
    gate = HelloGate(scfg, pools)
    for suite in (0x1301, 0x1302, 0x1303):
        for group in (None, 0x001D, 0x11EC):
            for cookie in (b"\x01" * 40, b"\x02" * 40, b"\x03" * 56):
                msg_type, body = msgs.push_message(hello_retry_request(suite, group, cookie))
                expected = handshake_fragment(msg_type, len(body), 0, 0, body)
                assert gate._hrr_fragment(suite, group, cookie) == expected
    gate.close()
    assert pools.in_use == 0


def test_records_of_the_retired_epoch_2_get_the_final_ack_at_a_bounded_rate() -> None:
    pair = make_pair(4)
    assert pair.handshake()
    _settle(pair)
    server = pair.server
    final = list(server._final_acks)
    assert final
    # No drop so far: the first one (below) gives the record layer a drops dict of its own,
    # and the connection must see the count there.
    assert server._records.drops is NO_DROPS
    # A record with epoch bits 2 (unified header 0b001CSLEE, 16-bit sequence, length).
    stale = bytes([0x2E, 0x00, 0x07, 0x00, 0x20]) + bytes(range(32))
    now = pair.net.now

    def answers(at: float, copies: int) -> int:
        for _ in range(copies):
            server.receive_datagram(stale, CLIENT_ADDR, at)
        out = server.datagrams_to_send(at)
        for lease, _ in out:
            lease.release()
        return len(out)

    assert answers(now, 1) == 1  # the first copy is answered...
    assert answers(now, 4) == 0  # ...once, however many copies
    assert answers(now + 0.1, 3) == 0
    assert answers(now + 0.3, 3) == 1
    assert server._final_acks == final and server.handshake_complete
    # A client never answers them (it has no final ACKs to repeat).
    assert not pair.client._final_acks
    pair.close()
    assert pair.pools.in_use == 0


def test_zero_counters_are_independent_plain_dicts() -> None:
    import sys

    from dtls13.connection import STAT_NAMES
    from dtls13.memory.counters import zero_counters

    a, b = zero_counters(STAT_NAMES), zero_counters(STAT_NAMES)
    assert type(a) is dict and a == dict.fromkeys(STAT_NAMES, 0) and list(a) == list(STAT_NAMES)
    a["records_in"] += 3
    a["new"] = 1  # a key of its own is fine too
    assert b == dict.fromkeys(STAT_NAMES, 0) and a["records_in"] == 3 and "new" not in b
    # Key sharing: far smaller than a dict of its own.
    assert sys.getsizeof(b) < sys.getsizeof(dict.fromkeys(STAT_NAMES, 0)) // 2


def test_zero_counters_with_names_that_are_not_identifiers() -> None:
    from dtls13.memory.counters import zero_counters

    names = ("a-b", "class", "ok", "")
    counters = zero_counters(names)
    assert counters == dict.fromkeys(names, 0) and list(counters) == list(names)
    assert zero_counters(()) == {}


# Python bytes (tracemalloc) an idle established server connection holds in the sans-IO
# core: the Connection, its record layer and kept handshake context, its pool owner and the
# endpoint's entries for it, once its ciphers' OpenSSL objects went (idle release; those live
# in OpenSSL's own allocations, not seen here). This test measures ~2,930 B, the replay
# windows' bitmaps included (~4,040 B before the record layer kept its epochs in attributes
# instead of dicts, shared its drop counters' zeros and its settings, its ciphers, epochs and
# windows shrank, and the handshake context kept only what is used after the handshake;
# ~4,880 B, without the bitmaps, before the trims benchmarks/README.md lists with the
# breakdown; ~5,490 B before the ones earlier); the bound leaves ~4%.
IDLE_CONNECTION_BYTES = 3_050
# The kept ServerHandshake itself (sys.getsizeof): a slot for each part used after the
# handshake (512 B, and an 88-B key schedule, when the handshake-only state had slots
# of its own).
IDLE_SERVER_HANDSHAKE_BYTES = 272


def _establish(server: ServerEndpoint, ccfg: Any, pools: PoolSet, port: int, now: float) -> None:
    """One client's handshake with `server`, datagrams handed over directly; the client
    acknowledges the session ticket and goes, leaving the server's connection idle."""
    addr = ("127.0.0.1", port)
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    client.connect(SERVER_ADDR, now)

    def pump() -> None:
        for _ in range(20):
            moved = False
            for lease, _ in client.datagrams_to_send(now):
                server.receive_datagram(bytes(lease), addr, now)
                lease.release()
                moved = True
            for lease, dst in server.datagrams_to_send(now):
                if dst == addr:
                    client.receive_datagram(bytes(lease), SERVER_ADDR, now)
                    moved = True
                lease.release()
            if not moved:
                return

    pump()
    timer = client.get_timer()
    if timer is not None and timer < now + 0.5:  # the delayed ACK of the ticket
        client.handle_timer(timer)
        pump()
    assert client.handshake_complete
    pools.release_owner(client.owner)


def _idle_server_connections(server: ServerEndpoint, ccfg: Any, pools: PoolSet, n: int) -> None:
    start = len(server.connections)
    now = float(start)
    for i in range(n):
        _establish(server, ccfg, pools, 1024 + start + i, now)
    server.new_connections()
    for step in range(1, 4):  # idle_release_after=1: released between 1 s and 2 s idle
        server.handle_timer(now + 1.1 * step)
        server.attention()
    for conn in server.connections.values():
        while conn.next_event() is not None:
            pass
    assert all(conn._records.ciphers_built == 0 for conn in server.connections.values())


def test_idle_established_connection_stays_under_its_measured_size() -> None:
    import gc
    import tracemalloc

    opts = {"idle_release_after": 1.0}
    ccfg, scfg = configs(client=opts, server=opts)
    pools = PoolSet()
    # Every client comes from 127.0.0.1: no per-source caps or rates in the way.
    dos = DoSProtectionConfig(
        datagrams_per_second=1e9,
        datagram_burst=1e9,
        bytes_per_second=1e12,
        byte_burst=1e12,
        max_concurrent_connections=10_000,
        max_connections_per_ip=10_000,
        max_half_open_per_ip=1_000,
    )
    server = ServerEndpoint(scfg, pools=pools, dos=dos, wall_clock=wall_clock)
    server.trim_heap = False
    n = 150
    tracemalloc.start()
    try:
        # A first batch warms every cache (certificates, suites, interned names).
        _idle_server_connections(server, ccfg, pools, 40)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        _idle_server_connections(server, ccfg, pools, n)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    per_connection = (after - before) / n
    assert len(server.connections) == 40 + n
    assert all(conn.handshake_complete for conn in server.connections.values())
    assert per_connection <= IDLE_CONNECTION_BYTES, per_connection
    server.close()
    for lease, _ in server.datagrams_to_send(0.0):
        lease.release()
    server.release()
    assert pools.in_use == 0


def test_idle_server_connection_shares_its_empty_parts_and_is_a_small_object() -> None:
    import sys

    from dtls13.connection_handshake import NO_HELLO_RECORDS

    opts = {"idle_release_after": 1.0}
    ccfg, scfg = configs(client=opts, server=opts)
    pools = PoolSet()
    server = ServerEndpoint(scfg, pools=pools, wall_clock=wall_clock)
    server.trim_heap = False
    _idle_server_connections(server, ccfg, pools, 3)
    conns = list(server.connections.values())
    for conn in conns:
        assert_no_handshake_state(conn)
        # At most CPython's small-object size (512 B): a larger one comes from malloc, between
        # OpenSSL's contexts, and keeps their pages in use once idle release frees them.
        assert sys.getsizeof(conn) <= 512
        # Nothing of their own while empty: shared empties instead of lists and dicts.
        assert conn._ack_list == () and conn._spare_peer_cids == ()
        assert conn._records._pending == () and conn._records._pending_times == ()
        assert conn._hello_records is NO_HELLO_RECORDS
        assert conn._amplification is None  # the address was validated
        hs = conn.handshake
        assert not isinstance(hs.hello_bodies, dict) and not hs.hello_bodies
        # What stays after the handshake has a slot; the rest went with the working state.
        # (8 B a slot: a part moved back from HandshakeWork shows here.)
        assert sys.getsizeof(hs) <= IDLE_SERVER_HANDSHAKE_BYTES, sys.getsizeof(hs)
    assert not NO_HELLO_RECORDS  # never written to
    # The same idle reassembly state and server name: one object for all of them.
    first = conns[0]
    assert all(c._idle_reassembly is first._idle_reassembly for c in conns)
    assert first.handshake.server_name is not None
    assert all(c.handshake.server_name is first.handshake.server_name for c in conns)
    server.close()
    for lease, _ in server.datagrams_to_send(0.0):
        lease.release()
    server.release()
    assert pools.in_use == 0


def test_idle_record_layer_holds_no_container_of_its_own() -> None:
    """An idle server connection's record layer keeps its one write and one read epoch in
    attributes and counts no drops: no dict, list or set of its own (epochs by number or
    by epoch bits, drop counters, pending records), only shared empty tuples and zeros."""
    import gc
    import sys

    opts = {"idle_release_after": 1.0}
    ccfg, scfg = configs(client=opts, server=opts)
    pools = PoolSet()
    server = ServerEndpoint(scfg, pools=pools, wall_clock=wall_clock)
    server.trim_heap = False
    _idle_server_connections(server, ccfg, pools, 3)
    for conn in server.connections.values():
        records = conn._records
        assert records.write_epochs() == [3] and records._write_older == ()
        assert [e for e in records.read_epochs() if e] == [3] and records._read_older == ()
        assert records.drops is NO_DROPS
        assert conn.statistics().record_drops == dict.fromkeys(DROP_REASONS, 0)
        held = gc.get_referents(records)
        assert not [o for o in held if isinstance(o, dict | list | set)], held
        assert all(o == () for o in held if type(o) is tuple)
        # Slots only, and no more of them than now (240 B: 26 slots); settings that no
        # per-record path reads are one tuple shared by the layers of one config.
        assert sys.getsizeof(records) <= 240
    first = next(iter(server.connections.values()))._records
    assert all(c._records._options is first._options for c in server.connections.values())
    server.close()
    for lease, _ in server.datagrams_to_send(0.0):
        lease.release()
    server.release()
    assert pools.in_use == 0


def test_replay_window_bits_come_from_pythons_allocator() -> None:
    # A read epoch's replay window lives as long as the epoch. Its bitmap comes from
    # Python's allocator (object arenas), not malloc, where it would sit among the OpenSSL
    # contexts the handshake allocates and keep their pages in use once idle release frees
    # them. tracemalloc sees Python's allocator only: the bitmap shows up in its count.
    import tracemalloc

    from dtls13._fast import ReplayWindow

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        windows = [ReplayWindow(4096) for _ in range(50)]  # 512 bytes of bits each
        per_window = (tracemalloc.get_traced_memory()[0] - before) / len(windows)
    finally:
        tracemalloc.stop()
    assert per_window >= 512 + ReplayWindow.__basicsize__, per_window
    assert all(w.check(0) for w in windows)
