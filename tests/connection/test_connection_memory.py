"""Proof of the memory design: every buffer a connection holds is a pooled lease.

The PoolSet's ``acquire`` (the one entry point the record layer, the flights and the
reassembler use) is wrapped to log who asked for what. The test then shows, from the
log and from the pools' own statistics, that

* every slot the pools handed out went through that entry point with an owner that is a
  connection (or its reassembly child): class acquires == logged acquires == owner acquires;
* every datagram sent is exactly one lease (acquired by the datagram writer), every
  received record was deprotected into a lease, every outgoing handshake message sits in
  one flight lease, and every message that arrived in fragments was reassembled in
  chunks taken for the bytes that arrived, then handed out in one lease;
* after close nothing is left in use: no live lease in any class, any owner, or the leak
  report.
"""

from __future__ import annotations

import sys
from collections import Counter

from dtls13._fast import Lease, Owner
from dtls13.connection import Connection
from dtls13.memory import PoolSet
from tests.support.dtls_pair import CLIENT_ADDR, Pair, make_pair, pki
from tests.support.netsim import Impairments

# Where (module, function) the wrapped acquire was called from -> what the slot holds.
DATAGRAM_OUT = {
    ("flights.py", "emit"),
    ("flights.py", "_flush"),
    ("connection.py", "send"),
    ("layer.py", "seal_app_datagram"),  # Connection.send's record, sealed in one call
    ("connection_flights.py", "send_ack_for"),
    ("connection.py", "_send_alert"),
}
RECORD_IN = {
    ("layer.py", "receive_datagram_untrusted"),
    ("layer.py", "_read_records"),
    ("layer.py", "receive_pending"),
    ("layer.py", "receive_app_untrusted"),  # the established data path
}
FLIGHT_MESSAGE = {("flights.py", "add")}
# Chunks of a message in fragments, or one lease for a whole message ahead of the next.
REASSEMBLY_CHUNKS = {
    ("reassembly_store.py", "write_untrusted"),
    ("fragments.py", "add_fragment_untrusted"),
}
REASSEMBLED = {("reassembly_store.py", "assemble")}
REASSEMBLY = REASSEMBLY_CHUNKS | REASSEMBLED
# A compressed certificate's decompressed bytes (RFC 8879; on by default).
DECOMPRESSED = {("connection.py", "_scratch_lease")}


class AcquireLog:
    """Wraps ``pools.acquire``; must be installed before the connections are created."""

    def __init__(self, pools: PoolSet) -> None:
        self.entries: list[tuple[str, str, int, Owner | None]] = []
        real = pools.acquire

        def acquire(size: int, owner: Owner | None = None, secure: bool = False) -> Lease:
            frame = sys._getframe(1)
            where = frame.f_code.co_filename.rsplit("/", 1)[-1]
            self.entries.append((where, frame.f_code.co_name, size, owner))
            return real(size, owner, secure)

        pools.acquire = acquire  # type: ignore[method-assign]

    def count(self, sites: set[tuple[str, str]], owner_of: Connection) -> int:
        return sum(
            1
            for where, func, _, owner in self.entries
            if (where, func) in sites and _root(owner) is owner_of.owner
        )


def _root(owner: Owner | None) -> Owner | None:
    while owner is not None and owner.parent is not None and owner.kind != "connection":
        owner = owner.parent
    return owner


def _run(pools: PoolSet, mtu: int, seed: int, impairments: Impairments | None = None) -> Pair:
    client_leaf = pki().leaf("ec256", cn="client")
    pair = make_pair(
        seed,
        impairments,
        client={
            "mtu": mtu,
            "certificate_chain": client_leaf.chain_pem,
            "private_key": client_leaf.key_pem,
        },
        server={"mtu": mtu, "client_auth": "required", "cafile": pki().root_pem},
        pools=pools,
    )
    assert pair.handshake()
    for i in range(8):
        assert pair.exchange(b"c%d" % i * 40, b"s%d" % i * 40)
    pair.client.key_update()
    assert pair.exchange(b"after", b"update")
    return pair


def _check_pair(log: AcquireLog, pair: Pair) -> dict[str, int]:
    figures: dict[str, int] = {}
    for name, conn in (("client", pair.client), ("server", pair.server)):
        stats = conn.statistics()
        out = log.count(DATAGRAM_OUT, conn)
        records = log.count(RECORD_IN, conn)
        flight = log.count(FLIGHT_MESSAGE, conn)
        reassembly = log.count(REASSEMBLY_CHUNKS, conn)
        assembled = log.count(REASSEMBLED, conn)
        # One lease per datagram handed to the caller, nothing else from these sites.
        assert out == conn.stats["datagrams_out"], (name, out, stats)
        # Every record processed was deprotected into a lease (a record that came before
        # its keys was kept in one more until they arrived).
        assert records >= conn.stats["records_in"] > 0, (name, records, stats)
        # One lease per handshake message we sent (message_seq counts them).
        assert flight == conn._send_seq, (name, flight, conn._send_seq)
        # Chunks for messages that came in fragments; whole ones are parsed in place. Each
        # is handed out in one lease: its only chunk, or one taken when it is delivered.
        counters = stats.reassembly
        assert isinstance(counters, dict)
        assert (reassembly > 0) == (counters["reassembled"] > 0), (name, reassembly, counters)
        assert assembled <= counters["reassembled"], (name, assembled, counters)
        figures.update(
            {
                f"{name}_datagrams_out": out,
                f"{name}_record_leases": records,
                f"{name}_flight_leases": flight,
                f"{name}_reassembly_leases": reassembly,
            }
        )
    return figures


def test_every_buffer_comes_from_the_pools_and_goes_back() -> None:
    pools = PoolSet()
    log = AcquireLog(pools)
    pairs = [
        _run(pools, 1200, 1),  # messages mostly whole: parsed in place
        _run(pools, 300, 2),  # certificates fragmented: reassembled in pooled leases
        _run(pools, 500, 3, Impairments(loss=0.2, reorder=0.3, duplicate=0.2)),
    ]
    figures = Counter[str]()
    for pair in pairs:
        figures.update(_check_pair(log, pair))
    assert figures["client_reassembly_leases"] > 0 and figures["server_reassembly_leases"] > 0
    # Every acquisition had an owner that is one of the connections (or its child).
    owners = {id(p.client.owner) for p in pairs} | {id(p.server.owner) for p in pairs}
    assert all(owner is not None for *_, owner in log.entries)
    assert all(id(_root(owner)) in owners for *_, owner in log.entries)
    # Every site is one of the known kinds of buffer.
    sites = DATAGRAM_OUT | RECORD_IN | FLIGHT_MESSAGE | REASSEMBLY | DECOMPRESSED
    assert {(w, f) for w, f, _, _ in log.entries} <= sites
    # The pools counted exactly the acquisitions we saw: nothing bypassed the entry point.
    stats = pools.statistics()
    assert sum(c.acquires for c in stats.classes) == len(log.entries)
    classes = sorted(c.slot_size for c in stats.classes)
    by_class = Counter(next(c for c in classes if c >= size) for _, _, size, _ in log.entries)
    assert {c.slot_size: c.acquires for c in stats.classes if c.acquires} == dict(by_class)
    # Owner statistics: the connections' owners account for every acquisition (a
    # reassembly owner is a child: its acquisitions count in its connection's too).
    connections = [o for o in stats.owners if o.kind == "connection"]
    assert len(connections) == 2 * len(pairs)
    assert sum(o.acquires for o in connections) == len(log.entries)
    # Reassembly leases are charged to a reassembly owner (a connection's child); an
    # established connection lets its idle reassembler (and that owner) go, so the live
    # owners account for at most that many.
    chunk_owners = [o for w, f, _, o in log.entries if (w, f) in REASSEMBLY_CHUNKS]
    assert all(o is not None and o.kind == "reassembly" for o in chunk_owners)
    reassembly = sum(o.acquires for o in stats.owners if o.kind == "reassembly")
    assert reassembly <= len(chunk_owners)
    # The lease a fragmented message is handed out in is the connection's own.
    assert all(
        o is not None and o.kind == "connection"
        for w, f, _, o in log.entries
        if (w, f) in REASSEMBLED
    )
    # Each side decompressed its peer's certificate (client auth) into a lease of its own.
    decompressed = [o for w, f, _, o in log.entries if (w, f) in DECOMPRESSED]
    assert len(decompressed) == 2 * len(pairs)
    assert {id(o) for o in decompressed} == owners
    # Datagram leases fit the MTU's class; the class for 1200 bytes is the 1536 one.
    datagram_sizes = {size for w, f, size, _ in log.entries if (w, f) in DATAGRAM_OUT}
    assert datagram_sizes <= {1200, 300, 500}
    for pair in pairs:
        pair.close()
    stats = pools.statistics()
    assert stats.in_use == 0 and stats.in_use_bytes == 0
    assert all(c.in_use == 0 and c.acquires == c.releases for c in stats.classes)
    assert all(o.live == 0 and o.in_use_bytes == 0 for o in stats.owners)
    assert pools.leak_report().entries == () and pools.leak_report().unowned == 0
    for pair in pairs:
        for conn in (pair.client, pair.server):
            assert conn.owner.in_use == 0 and conn.owner.live == 0
    print(dict(figures), f"total acquisitions {len(log.entries)}")


def test_buffers_held_between_calls_are_all_leases() -> None:
    """Mid-handshake, what the connection holds is visible as live leases of its owner."""
    pools = PoolSet()
    log = AcquireLog(pools)
    pair = make_pair(pools=pools, server={"mtu": 300})
    pair.client.connect(("10.0.0.2", 4433), 0.0)
    out = pair.client.datagrams_to_send(0.0)
    assert out and all(isinstance(lease, Lease) for lease, _ in out)
    # The ClientHello datagram plus the flight's copy of the ClientHello are live.
    assert pair.client.owner.live == len(out) + 1
    for lease, _ in out:
        pair.server.receive_datagram(bytes(lease), CLIENT_ADDR, 0.0)
        lease.release()
    # The server now holds its whole flight (one lease per message) and its datagrams.
    server_out = pair.server.datagrams_to_send(0.0)
    assert pair.server.owner.live == len(server_out) + pair.server._send_seq
    for lease, _ in server_out:
        lease.release()
    assert pair.server.owner.live == pair.server._send_seq
    assert len(log.entries) == sum(c.acquires for c in pools.statistics().classes)
    pair.close()
    assert pools.in_use == 0
